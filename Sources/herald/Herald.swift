import ArgumentParser

@main
struct Herald: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "herald",
        abstract: "A WebSocket long-connection gateway on Kafka.",
        subcommands: [ServeCommand.self, PushCommand.self, TokenCommand.self, KafkaCommand.self, TopicsCommand.self],
        defaultSubcommand: ServeCommand.self
    )
}
