import Foundation
public import HeraldCore

/// One push, validated (docs/protocol.md §3): where it goes, its payload exactly as sent, and its options.
public struct PushRequest: Sendable, Hashable {
    public enum Target: Sendable, Hashable {
        case users([String])
        case channels([String])
        case all
    }

    public var target: Target
    /// The record value: JSON as written, text as UTF-8, or the bytes base64 decoded to.
    public var payload: [UInt8]
    public var contentType: HeraldContentType
    public var id: String?
    public var exclude: String?
    public var expiresAt: Int64?

    /// The largest integer every JSON reader represents exactly (2^53 - 1).
    static let maxSafeInteger: Int64 = 9_007_199_254_740_991

    /// How many records this push produces (one per target stream).
    public var targetCount: Int {
        switch target {
        case .users(let users): users.count
        case .channels(let channels): channels.count
        case .all: 1
        }
    }

    /// The streams this push produces one record each to.
    public var streams: [HeraldStream] {
        switch target {
        case .users(let users): users.map { .user($0) }
        case .channels(let channels): channels.map { .channel($0) }
        case .all: [.broadcast]
        }
    }

    /// Parses and validates one push body (`bytes[range]`); errors name the field, prefixed by `path`.
    static func parse(_ bytes: [UInt8], in range: Range<Int>? = nil, path: String = "", limits: PushLimits) throws(APIError) -> PushRequest {
        let prefix = path.isEmpty ? "" : path + "."
        guard let members = JSONSpans.objectMembers(bytes, in: range) else {
            throw path.isEmpty
                ? APIError(.invalidBody, "the body must be one JSON object")
                : APIError.field(path, "must be a JSON object")
        }
        func value(_ key: String) -> Any? {
            guard let span = members[key] else { return nil }
            return try? JSONSerialization.jsonObject(with: Data(bytes[span]), options: [.fragmentsAllowed])
        }
        let known: Set<String> = ["to", "data", "encoding", "id", "exclude", "expires_at"]
        if let unknown = members.keys.sorted().first(where: { !known.contains($0) }) {
            throw APIError.field(prefix + unknown, "is not a field of a push (to, data, encoding, id, exclude, expires_at)")
        }

        // to
        guard let toSpan = members["to"], let to = JSONSpans.objectMembers(bytes, in: toSpan) else {
            throw APIError.field(prefix + "to", "is required: {\"users\":[…]}, {\"channels\":[…]} or {\"all\":true}")
        }
        guard to.count == 1, let (kind, span) = to.first else {
            throw APIError.field(prefix + "to", "must have exactly one of users, channels, all")
        }
        let targetValue = try? JSONSerialization.jsonObject(with: Data(bytes[span]), options: [.fragmentsAllowed])
        let target: Target
        switch kind {
        case "users", "channels":
            guard let names = targetValue as? [Any], !names.isEmpty, names.count <= limits.maxTargets else {
                throw APIError.field(prefix + "to.\(kind)", "must be an array of 1 to \(limits.maxTargets) names")
            }
            var list: [String] = []
            for (index, name) in names.enumerated() {
                guard let name = name as? String, !name.isEmpty, name.unicodeScalars.count <= 256 else {
                    throw APIError.field(prefix + "to.\(kind)[\(index)]", "must be a non-empty string of at most 256 characters")
                }
                if kind == "users", name == HeraldStream.broadcastKey {
                    throw APIError.field(prefix + "to.users[\(index)]", "\"*\" is the broadcast stream's key, not a user; use {\"all\":true}")
                }
                list.append(name)
            }
            target = kind == "users" ? .users(list) : .channels(list)
        case "all":
            guard let all = targetValue as? Bool, all, CFBooleanLike.isBool(bytes[span]) else {
                throw APIError.field(prefix + "to.all", "must be true")
            }
            target = .all
        default:
            throw APIError.field(prefix + "to.\(kind)", "is not a target (users, channels, all)")
        }

        // data and encoding
        guard let dataSpan = members["data"] else {
            throw APIError.field(prefix + "data", "is required")
        }
        let encoding = value("encoding")
        var payload: [UInt8]
        var contentType = HeraldContentType.json
        switch encoding {
        case nil:
            payload = Array(bytes[dataSpan])
        case let name as String where name == "json":
            payload = Array(bytes[dataSpan])
        case let name as String where name == "text" || name == "base64":
            guard let text = value("data") as? String else {
                throw APIError.field(prefix + "data", "must be a string when encoding is \(name)")
            }
            if name == "text" {
                payload = Array(text.utf8)
                contentType = .text
            } else {
                guard let decoded = Data(base64Encoded: text) else {
                    throw APIError.field(prefix + "data", "is not valid base64")
                }
                payload = Array(decoded)
                contentType = .binary
            }
        default:
            throw APIError.field(prefix + "encoding", "must be json, text or base64")
        }
        guard payload.count <= limits.maxPayloadBytes else {
            throw APIError(.payloadTooLarge, "\(prefix)data: the payload is \(payload.count) bytes; the limit is \(limits.maxPayloadBytes)")
        }

        // options
        var id: String? = nil
        if members["id"] != nil {
            guard let text = value("id") as? String, !text.isEmpty, text.unicodeScalars.count <= 128 else {
                throw APIError.field(prefix + "id", "must be a non-empty string of at most 128 characters")
            }
            id = text
        }
        var exclude: String? = nil
        if members["exclude"] != nil {
            guard let text = value("exclude") as? String, !text.isEmpty else {
                throw APIError.field(prefix + "exclude", "must be a session id string")
            }
            exclude = text
        }
        var expiresAt: Int64? = nil
        if let span = members["expires_at"] {
            // JSON has one number type: 1800000000000.0 is the same integer as 1800000000000.
            let text = String(decoding: bytes[span], as: UTF8.self).trimmingCharacters(in: .whitespaces)
            let millis = Int64(text) ?? Double(text).flatMap { $0 == $0.rounded() && abs($0) < 9e18 ? Int64($0) : nil }
            guard let millis, millis > 0, millis <= Self.maxSafeInteger else {
                throw APIError.field(prefix + "expires_at", "must be Unix milliseconds, a positive integer up to 2^53 - 1")
            }
            expiresAt = millis
        }
        return PushRequest(target: target, payload: payload, contentType: contentType, id: id, exclude: exclude, expiresAt: expiresAt)
    }
}

/// Limits on what one push may carry.
public struct PushLimits: Sendable {
    public var maxPayloadBytes = 64 * 1024
    public var maxTargets = 1_000
    public var maxBatch = 1_000
    /// Records one request may make (targets, summed over a batch's pushes); more is 413.
    public var maxRecordsPerRequest = 10_000
    /// Bytes of records one request may make (payload × targets, summed); more is 413. Every record
    /// is copied into the producer's queue, so this bounds what one request can hold there.
    public var maxRecordBytesPerRequest = 32 * 1024 * 1024
    /// Records per second one API key may push (a one-second bucket); more is 429 with Retry-After.
    /// 0 turns the limit off.
    public var recordsPerSecondPerKey: Double = 20_000
    /// How long a push this node acknowledged may wait for this node's own fan-out before new pushes
    /// are refused with 503 `delivery-behind` and Retry-After (ms); 0 turns the bound off.
    public var maxDeliveryDelayMillis: Int64 = 250
    public init() {}
}

/// JSONSerialization reads `1` as true; only the literal `true` is a boolean here.
enum CFBooleanLike {
    static func isBool(_ bytes: ArraySlice<UInt8>) -> Bool {
        let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespaces)
        return text == "true" || text == "false"
    }
}
