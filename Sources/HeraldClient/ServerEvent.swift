import Foundation

/// A frame from a Herald node, parsed (docs/protocol.md §2).
public enum ServerEvent: Sendable, Equatable {
    case welcome(Welcome)
    case message(Message)
    case error(code: String, message: String)
    /// Kafka acknowledged the publish the client sent with `id`; with `sync`, the position of its copy
    /// in the user's stream (`stream` is `u`).
    case published(id: String, stream: String?, offset: Int64?)
    /// An `error` frame about the publish the client sent with `id` (`publish-failed`, `slow-down`, …):
    /// a retry should send the same id.
    case publishFailed(id: String, code: String, message: String)
    /// The node accepted a `refresh`: the connection now expires at `expiresAt` (Unix milliseconds).
    case refreshed(expiresAt: Int64)
    /// The answer to the `history` request sent with its `id` (an `error` about one is `.publishFailed`
    /// with that id).
    case history(History)
    /// The connection ended, with the server's close code if it sent one.
    case closed(code: UInt16?, reason: String)

    public struct Welcome: Sendable, Equatable {
        public var node: String
        public var session: String
        public var epoch: String
        public var positions: [String: Int64]
        public var recovered: Bool?
        public var reason: String?
        /// `stored-cursor`: the node resumed from the device's committed cursor (the client sent none).
        public var source: String? = nil
    }

    public struct Message: Sendable, Equatable {
        public var stream: String
        public var offset: Int64
        public var id: String?
        /// `data` as JSON text (a JSON payload as sent, text as a JSON string, binary as base64 in a string).
        public var data: String
        public var encoding: String?
        /// Who published it into its channel (`herald-user`), when a signed-in client did.
        public var user: String? = nil
    }

    public struct History: Sendable, Equatable {
        public var id: String
        public var stream: String
        /// Oldest first.
        public var messages: [Message]
        public var earliest: Int64
        public var end: Int64
        /// The `before` of the page before this one; nil when this one reached `earliest`.
        public var next: Int64?
        /// The bound that cut the answer (`count`, `bytes`, `scan`) and its value.
        public var cut: String?
        public var limit: Int64?
        public var expired: Bool
    }

    /// Parses one text frame; `nil` for a frame that is not a Herald server frame.
    public static func parse(_ text: String) -> ServerEvent? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              let type = object["type"] as? String else { return nil }
        switch type {
        case "welcome":
            var positions: [String: Int64] = [:]
            for (stream, value) in object["positions"] as? [String: Any] ?? [:] {
                if let number = value as? NSNumber { positions[stream] = number.int64Value }
            }
            return .welcome(Welcome(
                node: object["node"] as? String ?? "", session: object["session"] as? String ?? "",
                epoch: object["epoch"] as? String ?? "", positions: positions,
                recovered: object["recovered"] as? Bool, reason: object["reason"] as? String, source: object["source"] as? String
            ))
        case "message":
            return message(object).map { .message($0) }
        case "history":
            guard let id = object["id"] as? String, let stream = object["stream"] as? String, let list = object["messages"] as? [[String: Any]],
                  let earliest = (object["earliest"] as? NSNumber)?.int64Value, let end = (object["end"] as? NSNumber)?.int64Value
            else { return nil }
            let messages = list.compactMap(message)
            guard messages.count == list.count else { return nil }
            return .history(History(
                id: id, stream: stream, messages: messages, earliest: earliest, end: end, next: (object["next"] as? NSNumber)?.int64Value,
                cut: object["cut"] as? String, limit: (object["limit"] as? NSNumber)?.int64Value, expired: object["expired"] as? Bool ?? false
            ))
        case "error":
            let code = object["code"] as? String ?? "", message = object["message"] as? String ?? ""
            if let id = object["id"] as? String { return .publishFailed(id: id, code: code, message: message) }
            return .error(code: code, message: message)
        case "refreshed":
            guard let expiresAt = (object["expires_at"] as? NSNumber)?.int64Value else { return nil }
            return .refreshed(expiresAt: expiresAt)
        case "published":
            guard let id = object["id"] as? String else { return nil }
            return .published(id: id, stream: object["stream"] as? String, offset: (object["offset"] as? NSNumber)?.int64Value)
        default:
            return nil
        }
    }

    /// A `message` object: a frame's, or one of a history answer's.
    private static func message(_ object: [String: Any]) -> Message? {
        guard let stream = object["stream"] as? String, let offset = (object["offset"] as? NSNumber)?.int64Value,
              let value = object["data"],
              let data = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys, .withoutEscapingSlashes])
        else { return nil }
        return Message(
            stream: stream, offset: offset, id: object["id"] as? String, data: String(decoding: data, as: UTF8.self),
            encoding: object["encoding"] as? String, user: object["user"] as? String
        )
    }
}
