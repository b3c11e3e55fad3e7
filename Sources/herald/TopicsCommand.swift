import ArgumentParser

/// Herald's topics on a Kafka cluster: `show` (the default) and `create`, for clusters whose topics
/// no operator (Strimzi's KafkaTopic) makes.
struct TopicsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topics",
        abstract: "Show or create Herald's topics on a Kafka cluster.",
        subcommands: [TopicsShowCommand.self, TopicsCreateCommand.self],
        defaultSubcommand: TopicsShowCommand.self
    )
}
