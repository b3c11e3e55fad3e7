import ArgumentParser

/// The load generator, apart from the server so that `herald` carries no client code: it drives one or
/// more nodes from outside, as real devices and business services would, and re-executes itself as
/// its worker processes.
@main
struct HeraldBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "herald-bench",
        abstract: "Measure Herald. Each subcommand prints a table, or one JSON line with --json.",
        subcommands: [
            ConnectionsBenchCommand.self, BroadcastBenchCommand.self, PushBenchCommand.self, ResumeBenchCommand.self,
            KafkaBenchCommand.self, SoakBenchCommand.self,
        ]
    )
}
