import Foundation
import Testing

/// `herald topics create` against the embedded Kafka in its own process, over TCP, as an operator
/// runs it against a cluster. librdkafka's mock cluster does not implement CreateTopics, so what it
/// can show is the command's own part: existing topics are recognised (and a different partition
/// count refused), a topic it cannot create is a clear error in time, and bad arguments are named.
@Suite("herald topics create")
struct TopicsCommandTests {
    @Test("topics create leaves topics with the asked partition count alone, refuses a different count, names a topic the cluster cannot create, and range-checks its arguments; topics alone still shows")
    func createAgainstTheEmbeddedKafka() async throws {
        let kafka = try HeraldProcess(["kafka", "--embedded-partitions", "4", "--log-level", "warning"])
        defer { kafka.stop() }
        let bootstrap = try await kafka.waitFor(#"(127\.0\.0\.1:\d+)"#)
        let herald = try heraldExecutable().path

        let same = try run(herald, ["topics", "create", "--kafka-brokers", bootstrap, "--partitions", "4", "--replication-factor", "1", "--retention", "7d"])
        #expect(same.status == 0, "\(same.output)")
        #expect(same.output.contains("herald.events: exists with 4 partitions, left as it is"), "\(same.output)")
        #expect(same.output.contains("herald.upstream: exists with 4 partitions, left as it is"), "\(same.output)")
        #expect(same.output.contains("herald.cursors: exists with 4 partitions, left as it is"), "the embedded Kafka makes the cursors topic too: \(same.output)")
        #expect(same.output.contains("herald.sessions: exists with 4 partitions, left as it is"), "\(same.output)")

        let other = try run(herald, ["topics", "create", "--kafka-brokers", bootstrap, "--partitions", "8", "--replication-factor", "1"])
        #expect(other.status != 0)
        #expect(other.output.contains("herald.events exists with 4 partitions, not 8"), "\(other.output)")

        let started = ContinuousClock.now
        let new = try run(herald, [
            "topics", "create", "--kafka-brokers", bootstrap, "--events-topic", "fresh.events", "--upstream-topic", "fresh.upstream",
            "--cursors-topic", "fresh.cursors", "--sessions-topic", "fresh.sessions",
            "--partitions", "6", "--replication-factor", "1", "--timeout-seconds", "3",
        ])
        #expect(new.status != 0, "the mock cluster has no CreateTopics, yet: \(new.output)")
        #expect(new.output.contains("the cluster did not create fresh.events, fresh.upstream, fresh.cursors, fresh.sessions"), "\(new.output)")
        #expect(!new.output.contains("Usage:"), "a cluster's refusal is not a usage error: \(new.output)")
        #expect(ContinuousClock.now - started < .seconds(30), "an unanswered CreateTopics ends within its timeout")

        for (arguments, message) in [
            (["--partitions", "0"], "--partitions must be 1 to 10000, not 0"),
            (["--replication-factor", "40"], "--replication-factor must be 1 to 32, not 40"),
            (["--retention", "7x"], "--retention=7x is not a duration"),
            (["--retention", "10s"], "--retention must be at least a minute"),
            (["--replication-factor", "2", "--min-insync-replicas", "3"], "--min-insync-replicas must be 1 to the replication factor (2), not 3"),
        ] {
            let refused = try run(herald, ["topics", "create", "--kafka-brokers", bootstrap] + arguments)
            #expect(refused.status != 0)
            #expect(refused.output.contains(message), "\(arguments): \(refused.output)")
        }

        let shown = try run(herald, ["topics", "--kafka-brokers", bootstrap])
        #expect(shown.status == 0)
        #expect(shown.output.contains("herald.events: 4 partitions"), "\(shown.output)")
        #expect(shown.output.contains("herald.sessions: 4 partitions"), "\(shown.output)")
        let shownExplicitly = try run(herald, ["topics", "show", "--kafka-brokers", bootstrap])
        #expect(shownExplicitly.output.contains("herald.events: 4 partitions"), "\(shownExplicitly.output)")
        #expect(shownExplicitly.output.contains("herald.cursors: 4 partitions"), "\(shownExplicitly.output)")
        let withoutCursors = try run(herald, ["topics", "show", "--kafka-brokers", bootstrap, "--cursors-topic", "none"])
        #expect(!withoutCursors.output.contains("herald.cursors"), "--cursors-topic none turns the topic off: \(withoutCursors.output)")
    }
}
