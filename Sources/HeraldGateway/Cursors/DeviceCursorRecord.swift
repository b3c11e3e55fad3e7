import Foundation
public import HeraldCore

/// One record of the cursors topic: where a device (user and `device` claim) is current, per stream,
/// in one epoch. The key is the user and the device, so the compacted topic keeps the last position
/// of every device; the value is JSON: `{"user":…,"device":…,"epoch":…,"cursor":"u:1842,*:78"}`
/// (the cursor in the text `ResumeCursor` reads and writes).
public struct DeviceCursorRecord: Sendable, Equatable {
    /// Longest user id (the token's `sub`) and device id a record is kept for.
    public static let maxIDBytes = 256
    /// Largest value read back: 256 entries of a long channel name fit in far less.
    public static let maxValueBytes = 64 * 1024

    public var user: String
    public var device: String
    public var epoch: String
    public var cursor: ResumeCursor

    public init(user: String, device: String, epoch: String, cursor: ResumeCursor) {
        self.user = user
        self.device = device
        self.epoch = epoch
        self.cursor = cursor
    }

    /// The compaction key: the user's length, the user, then the device, so no two pairs share one.
    public static func key(user: String, device: String) -> [UInt8] {
        Array("\(user.utf8.count):\(user)\(device)".utf8)
    }

    public var key: [UInt8] { Self.key(user: user, device: device) }

    public var value: [UInt8] {
        let object: [String: String] = ["user": user, "device": device, "epoch": epoch, "cursor": cursor.text]
        // A dictionary of strings always encodes.
        return Array((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data())
    }

    /// Reads a record's value; `nil` for anything that is not one (a tombstone, another writer's
    /// bytes, a cursor that does not parse, ids out of bounds).
    public static func decode(_ bytes: some Collection<UInt8>) -> DeviceCursorRecord? {
        guard !bytes.isEmpty, bytes.count <= maxValueBytes,
              let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
              let user = object["user"] as? String, let device = object["device"] as? String,
              let epoch = object["epoch"] as? String, let text = object["cursor"] as? String,
              !user.isEmpty, !device.isEmpty, user.utf8.count <= maxIDBytes, device.utf8.count <= maxIDBytes,
              let cursor = try? ResumeCursor.parse(text)
        else { return nil }
        return DeviceCursorRecord(user: user, device: device, epoch: epoch, cursor: cursor)
    }
}
