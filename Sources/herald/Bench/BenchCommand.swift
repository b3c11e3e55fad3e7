import ArgumentParser

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure Herald. Each subcommand prints a table, or one JSON line with --json.",
        subcommands: [ConnectionsBenchCommand.self, BroadcastBenchCommand.self, PushBenchCommand.self, ResumeBenchCommand.self, KafkaBenchCommand.self]
    )
}
