import Synchronization

/// Lets one log line per key through per interval, and counts what it held back, so that a producer
/// writing thousands of bad records a second yields a few lines a minute that still say how many.
final class LogThrottle: Sendable {
    private struct Slot {
        var lastMillis: Int64
        var suppressed: Int
    }

    private let intervalMillis: Int64
    private let slots = Mutex<[String: Slot]>([:])

    init(intervalMillis: Int64) {
        self.intervalMillis = intervalMillis
    }

    /// `nil` when this occurrence is held back; otherwise how many were held back since the last one let through.
    func admit(_ key: String, now: Int64) -> Int? {
        slots.withLock { slots in
            if var slot = slots[key], now - slot.lastMillis < intervalMillis {
                slot.suppressed += 1
                slots[key] = slot
                return nil
            }
            let suppressed = slots[key]?.suppressed ?? 0
            slots[key] = Slot(lastMillis: now, suppressed: 0)
            return suppressed
        }
    }
}
