import Foundation
import NIOCore

/// A frame a client sends (docs/protocol.md §2). Client frames are few (acks, subscriptions, publishes),
/// so they are parsed with Foundation rather than by hand.
public enum ClientMessage: Equatable, Sendable {
    case ack(stream: String, offset: Int64)
    /// `data` is the JSON text of the published value, re-serialised. `id` is the client's own id
    /// for it: the node then answers `published` (or an `error` naming it), and uses it as the
    /// records' `herald-id`, so a retry with the same id is recognised.
    case publish(data: [UInt8], sync: Bool, id: String? = nil)
    case subscribe(channel: String, offset: Int64?)
    case unsubscribe(channel: String)
    /// `publish` with a `channel`: into that channel's stream, where its namespace allows it.
    case channelPublish(channel: String, data: [UInt8], id: String? = nil)
    /// A new token for the same user, to move the connection's expiry (docs/protocol.md §5).
    case refresh(token: String)

    /// The most bytes of a `refresh` token (a token is a few hundred bytes; the frame limit bounds it too).
    public static let maxTokenBytes = 8 * 1024
    /// The newest messages of a stream the connection may read (`u`, `*` or `c:NAME`), answered by a
    /// `history` frame (or an `error`) carrying `id`.
    case history(id: String, stream: String, query: HistoryQuery)

    /// The most UTF-8 bytes of a publish `id`: it travels in every record's headers and frames.
    public static let maxPublishIDBytes = 128

    public static func parse(_ bytes: [UInt8]) throws(ClientMessageError) -> ClientMessage {
        let object: [String: Any]
        do {
            guard let parsed = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]) as? [String: Any] else {
                throw ClientMessageError("a client frame must be a JSON object")
            }
            object = parsed
        } catch let error as ClientMessageError {
            throw error
        } catch {
            throw ClientMessageError("the frame is not valid JSON")
        }
        guard let type = object["type"] as? String else {
            throw ClientMessageError("the frame has no \"type\"")
        }
        switch type {
        case "ack":
            guard let stream = object["stream"] as? String, !stream.isEmpty else { throw ClientMessageError("ack needs \"stream\"") }
            guard let offset = integer(object["offset"]) else { throw ClientMessageError("ack needs an integer \"offset\"") }
            return .ack(stream: stream, offset: offset)
        case "publish":
            guard let data = object["data"] else { throw ClientMessageError("publish needs \"data\"") }
            var sync = false
            if let raw = object["sync"] {
                guard let flag = boolean(raw) else { throw ClientMessageError("publish \"sync\" must be true or false") }
                sync = flag
            }
            var id: String? = nil
            if let raw = object["id"] {
                guard let text = raw as? String, !text.isEmpty, text.utf8.count <= maxPublishIDBytes else {
                    throw ClientMessageError("publish \"id\" must be a string of 1 to \(maxPublishIDBytes) bytes")
                }
                id = text
            }
            guard let encoded = try? JSONSerialization.data(withJSONObject: data, options: [.fragmentsAllowed, .withoutEscapingSlashes]) else {
                throw ClientMessageError("publish \"data\" cannot be encoded")
            }
            if object["channel"] != nil {
                // `sync` copies into the user's own stream; a channel's viewers already include the user's devices.
                guard object["sync"] == nil else { throw ClientMessageError("publish into a channel takes no \"sync\"") }
                return .channelPublish(channel: try channelName(object), data: Array(encoded), id: id)
            }
            return .publish(data: Array(encoded), sync: sync, id: id)
        case "subscribe":
            let channel = try channelName(object)
            var offset: Int64? = nil
            if let raw = object["offset"] {
                guard let value = integer(raw) else { throw ClientMessageError("subscribe \"offset\" must be an integer") }
                offset = value
            }
            return .subscribe(channel: channel, offset: offset)
        case "unsubscribe":
            return .unsubscribe(channel: try channelName(object))
        case "refresh":
            guard let token = object["token"] as? String, !token.isEmpty, token.utf8.count <= maxTokenBytes else {
                throw ClientMessageError("refresh needs a \"token\" string of 1 to \(maxTokenBytes) bytes")
            }
            return .refresh(token: token)
        case "history":
            return try history(object)
        default:
            throw ClientMessageError("unknown frame type \"\(type)\"")
        }
    }

    /// The frame's JSON text, as a client sends it: the one writer of client frames, so a channel name
    /// with a quote or a backslash is escaped rather than breaking the frame.
    public var text: String {
        var buffer = ByteBuffer()
        switch self {
        case .ack(let stream, let offset):
            buffer.writeString(#"{"type":"ack","stream":"#)
            buffer.writeJSONString(stream)
            buffer.writeString(#","offset":\#(offset)}"#)
        case .publish(let data, let sync, let id):
            buffer.writeString(#"{"type":"publish","data":"#)
            buffer.writeBytes(data)
            buffer.writeString(#","sync":\#(sync)"#)
            if let id {
                buffer.writeString(#","id":"#)
                buffer.writeJSONString(id)
            }
            buffer.writeString("}")
        case .subscribe(let channel, let offset):
            buffer.writeString(#"{"type":"subscribe","channel":"#)
            buffer.writeJSONString(channel)
            if let offset { buffer.writeString(#","offset":\#(offset)"#) }
            buffer.writeString("}")
        case .unsubscribe(let channel):
            buffer.writeString(#"{"type":"unsubscribe","channel":"#)
            buffer.writeJSONString(channel)
            buffer.writeString("}")
        case .channelPublish(let channel, let data, let id):
            buffer.writeString(#"{"type":"publish","channel":"#)
            buffer.writeJSONString(channel)
            buffer.writeString(#","data":"#)
            buffer.writeBytes(data)
            if let id {
                buffer.writeString(#","id":"#)
                buffer.writeJSONString(id)
            }
            buffer.writeString("}")
        case .refresh(let token):
            buffer.writeString(#"{"type":"refresh","token":"#)
            buffer.writeJSONString(token)
            buffer.writeString("}")
        case .history(let id, let stream, let query):
            buffer.writeString(#"{"type":"history","id":"#)
            buffer.writeJSONString(id)
            buffer.writeString(#","stream":"#)
            buffer.writeJSONString(stream)
            buffer.writeString(#","limit":\#(query.limit)"#)
            if let before = query.before { buffer.writeString(#","before":\#(before)"#) }
            buffer.writeString("}")
        }
        return String(buffer: buffer)
    }

    private static func history(_ object: [String: Any]) throws(ClientMessageError) -> ClientMessage {
        guard let id = object["id"] as? String, !id.isEmpty, id.utf8.count <= maxPublishIDBytes else {
            throw ClientMessageError("history needs an \"id\": a string of 1 to \(maxPublishIDBytes) bytes, which the answer carries")
        }
        guard let stream = object["stream"] as? String, !stream.isEmpty else {
            throw ClientMessageError("history needs a \"stream\": u, * or c:NAME")
        }
        var query = HistoryQuery()
        if let raw = object["limit"] {
            // A count beyond what the node answers is allowed (the answer says it was cut); integer()
            // takes only whole numbers it can hold exactly.
            guard let limit = integer(raw), limit >= 1 else { throw ClientMessageError("history \"limit\" must be a whole number of 1 or more") }
            query.limit = Int(limit)
        }
        if let raw = object["before"] {
            guard let before = integer(raw), before >= 0 else { throw ClientMessageError("history \"before\" must be an offset: a whole number of 0 or more") }
            query.before = before
        }
        return .history(id: id, stream: stream, query: query)
    }

    private static func channelName(_ object: [String: Any]) throws(ClientMessageError) -> String {
        guard let channel = object["channel"] as? String, !channel.isEmpty else {
            throw ClientMessageError("the frame needs a non-empty \"channel\"")
        }
        return channel
    }

    private static func integer(_ value: Any?) -> Int64? {
        // Booleans arrive as NSNumbers too (and on Linux `1 is Bool` holds): only whole numbers that fit count.
        guard let number = value as? NSNumber, !isBoolean(number) else { return nil }
        let double = number.doubleValue
        guard double.rounded() == double, abs(double) < 9.0e15 else { return nil }
        return number.int64Value
    }

    private static func boolean(_ value: Any) -> Bool? {
        guard let number = value as? NSNumber, isBoolean(number) else { return nil }
        return number.boolValue
    }

    /// JSON `true`/`false` parse to NSNumbers of type `c` (char); numbers never do.
    private static func isBoolean(_ number: NSNumber) -> Bool {
        String(cString: number.objCType) == "c"
    }
}

/// Why a client frame was refused; sent back in an `error` frame with code `bad-request`.
public struct ClientMessageError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
