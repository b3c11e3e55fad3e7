public import HeraldCore
import Synchronization

/// The committed position of every device this node knows (from its own commits and the cursors
/// topic), bounded: at most `capacity` devices, the one first stored longest ago forgotten first
/// (a forgotten device's next commit stores it again). A forgotten device that connects without a cursor
/// starts live, as one that never acked does. One entry holds the user and device ids, the epoch
/// and the cursor's entries: measured, 217 bytes for short ids and three streams, so 22 MB for the
/// default of 100,000 devices.
public final class StoredCursors: Sendable {
    public static let defaultCapacity = 100_000

    struct Key: Hashable {
        var user: String
        var device: String
    }

    public struct Entry: Sendable, Equatable {
        public var epoch: String
        public var cursor: ResumeCursor
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        var order: [Key] = []
        var next = 0
    }

    public let capacity: Int
    private let state = Mutex(State())

    public init(capacity: Int = defaultCapacity) {
        self.capacity = max(1, capacity)
    }

    /// Stores what a device committed; within one epoch a stream's position only moves forward (two
    /// tabs of one device, or a commit read back after a newer local one, cannot move it back).
    func store(_ record: DeviceCursorRecord) {
        let key = Key(user: record.user, device: record.device)
        state.withLock { state in
            if var entry = state.entries[key] {
                if entry.epoch == record.epoch {
                    entry.cursor = Self.merged(entry.cursor, record.cursor)
                } else {
                    entry = Entry(epoch: record.epoch, cursor: record.cursor)
                }
                state.entries[key] = entry
                return
            }
            if state.order.count < capacity {
                state.order.append(key)
            } else {
                state.entries[state.order[state.next]] = nil
                state.order[state.next] = key
                state.next = (state.next + 1) % capacity
            }
            state.entries[key] = Entry(epoch: record.epoch, cursor: record.cursor)
        }
    }

    public func entry(user: String, device: String) -> Entry? {
        state.withLock { $0.entries[Key(user: user, device: device)] }
    }

    /// Devices stored now.
    public var count: Int { state.withLock { $0.entries.count } }

    /// Every stream of both, each at the further of its two positions.
    static func merged(_ old: ResumeCursor, _ new: ResumeCursor) -> ResumeCursor {
        var entries = old.entries
        for entry in new.entries {
            if let index = entries.firstIndex(where: { $0.stream == entry.stream }) {
                entries[index].offset = max(entries[index].offset, entry.offset)
            } else if entries.count < ResumeCursor.maxEntries {
                entries.append(entry)
            }
        }
        return ResumeCursor(entries: entries)
    }
}
