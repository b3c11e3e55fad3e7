import ArgumentParser

@main
struct Herald: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "herald",
        abstract: "A WebSocket long-connection gateway on Kafka.",
        version: BuildInfo.text,
        subcommands: [ServeCommand.self, PushCommand.self, TokenCommand.self, KafkaCommand.self, TopicsCommand.self],
        defaultSubcommand: ServeCommand.self
    )

    static func main() async {
        StandardOutput.flushEveryLine()
        await main(nil)
    }
}
