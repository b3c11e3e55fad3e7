#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// The wall clock in Unix milliseconds, as records, tokens and cursors carry time. Injected into the
/// gateway's parts (shards, dispatcher, sessions, hot window) so a test can run them on its own time.
public struct WallClock: Sendable {
    public var nowMillis: @Sendable () -> Int64

    public init(nowMillis: @escaping @Sendable () -> Int64) {
        self.nowMillis = nowMillis
    }

    public static let system = WallClock {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Int64(time.tv_sec) * 1_000 + Int64(time.tv_nsec) / 1_000_000
    }
}
