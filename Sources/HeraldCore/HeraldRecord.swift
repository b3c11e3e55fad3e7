/// The routing envelope of one message on the events topic: its stream and the optional `herald-*`
/// headers (docs/protocol.md §1). The payload itself stays as the record's value.
///
/// Producers that know nothing of Herald write only a key and a value; that is a message to the user
/// named by the key. Everything else is optional, so decoding is lenient about absence and strict
/// about nonsense: a header that is present must be well formed.
public struct HeraldRecord: Hashable, Sendable {
    public var stream: HeraldStream
    /// Message id (`herald-id`); the HTTP API sets a UUID.
    public var id: String?
    /// `nil` means "not stated": JSON when the value parses as JSON, else text.
    public var contentType: HeraldContentType?
    /// A session id that must not receive this record (multi-device echo suppression).
    public var exclude: String?
    /// Unix milliseconds after which the record is neither delivered nor replayed.
    public var expiresAt: Int64?
    /// Set on control records, which are acted on by every node and never delivered as messages.
    public var control: HeraldControl?
    /// On a `disconnect` control record: Unix milliseconds before which the user's tokens are refused.
    public var revokeBefore: Int64?
    /// Whose `id` it is (`herald-id-scope`): the push API's digest of the API key that pushed it.
    public var idScope: String? = nil
    /// On a record a client published into a channel: the publisher's user id (`herald-user`).
    public var user: String?

    public init(
        stream: HeraldStream,
        id: String? = nil,
        contentType: HeraldContentType? = nil,
        exclude: String? = nil,
        expiresAt: Int64? = nil,
        control: HeraldControl? = nil,
        revokeBefore: Int64? = nil,
        user: String? = nil
    ) {
        self.revokeBefore = revokeBefore
        self.user = user
        self.stream = stream
        self.id = id
        self.contentType = contentType
        self.exclude = exclude
        self.expiresAt = expiresAt
        self.control = control
    }

    /// The record key to produce with.
    public var key: String { stream.kafkaKey }

    /// The headers to produce with. A user's stream carries no `herald-kind`, as a plain producer's
    /// record would not.
    public var headers: [HeraldHeader] {
        var headers: [HeraldHeader] = []
        switch stream.kind {
        case .user: break
        case .channel, .broadcast: headers.append(HeraldHeader(name: HeraldHeader.kind, string: stream.kind.rawValue))
        }
        if let id { headers.append(HeraldHeader(name: HeraldHeader.id, string: id)) }
        if let idScope { headers.append(HeraldHeader(name: HeraldHeader.idScope, string: idScope)) }
        if let contentType { headers.append(HeraldHeader(name: HeraldHeader.contentType, string: contentType.rawValue)) }
        if let exclude { headers.append(HeraldHeader(name: HeraldHeader.exclude, string: exclude)) }
        if let expiresAt { headers.append(HeraldHeader(name: HeraldHeader.expiresAt, string: String(expiresAt))) }
        if let control { headers.append(HeraldHeader(name: HeraldHeader.control, string: control.rawValue)) }
        if let revokeBefore { headers.append(HeraldHeader(name: HeraldHeader.revokeBefore, string: String(revokeBefore))) }
        if let user { headers.append(HeraldHeader(name: HeraldHeader.user, string: user)) }
        return headers
    }

    /// What identifies the message among the copies of one stream: its id within its scope. A later
    /// record of the stream with the same key is a repeat of it (docs/protocol.md §2).
    public var deduplicationKey: String? {
        guard let id else { return nil }
        guard let idScope else { return id }
        return idScope + "\u{1F}" + id
    }

    public func isExpired(atUnixMillis now: Int64) -> Bool {
        guard let expiresAt else { return false }
        return now >= expiresAt
    }

    /// Reads the envelope of a consumed record. Unknown headers are ignored (other producers may add
    /// their own); a known header with a value that cannot be meant is an error, so that a producer's
    /// mistake is reported rather than guessed around.
    public static func decode<Headers: Sequence>(key: [UInt8]?, headers: Headers) throws(HeraldRecordError) -> HeraldRecord
    where Headers.Element == HeraldHeader {
        guard let key, !key.isEmpty else {
            throw HeraldRecordError(.missingKey, "the record has no key, so it names no stream")
        }
        guard let keyString = String(validating: key, as: UTF8.self) else {
            throw HeraldRecordError(.invalidKey, "the record key is not valid UTF-8")
        }

        var kind = HeraldStreamKind.user
        var record = HeraldRecord(stream: .user(keyString))
        for header in headers {
            switch header.name {
            case HeraldHeader.kind:
                guard let value = header.stringValue, let parsed = HeraldStreamKind(rawValue: value) else {
                    throw HeraldRecordError(.invalidHeader, "herald-kind must be user, channel or broadcast")
                }
                kind = parsed
            case HeraldHeader.id:
                guard let value = header.stringValue else {
                    throw HeraldRecordError(.invalidHeader, "herald-id is not valid UTF-8")
                }
                record.id = value
            case HeraldHeader.idScope:
                guard let value = header.stringValue else {
                    throw HeraldRecordError(.invalidHeader, "herald-id-scope is not valid UTF-8")
                }
                record.idScope = value
            case HeraldHeader.contentType:
                guard let value = header.stringValue, let parsed = HeraldContentType(rawValue: value) else {
                    throw HeraldRecordError(
                        .invalidHeader,
                        "herald-content-type must be application/json, text/plain or application/octet-stream"
                    )
                }
                record.contentType = parsed
            case HeraldHeader.exclude:
                guard let value = header.stringValue else {
                    throw HeraldRecordError(.invalidHeader, "herald-exclude is not valid UTF-8")
                }
                record.exclude = value
            case HeraldHeader.control:
                guard let value = header.stringValue, let parsed = HeraldControl(rawValue: value) else {
                    throw HeraldRecordError(.invalidHeader, "herald-control must be disconnect")
                }
                record.control = parsed
            case HeraldHeader.revokeBefore:
                guard let value = header.stringValue, let millis = Int64(value), millis >= 0 else {
                    throw HeraldRecordError(.invalidHeader, "herald-revoke-before must be Unix milliseconds as a non-negative decimal integer")
                }
                record.revokeBefore = millis
            case HeraldHeader.user:
                guard let value = header.stringValue, !value.isEmpty else {
                    throw HeraldRecordError(.invalidHeader, "herald-user must be a non-empty UTF-8 user id")
                }
                record.user = value
            case HeraldHeader.expiresAt:
                guard let value = header.stringValue, let millis = Int64(value) else {
                    throw HeraldRecordError(.invalidHeader, "herald-expires-at must be Unix milliseconds as a decimal integer")
                }
                record.expiresAt = millis
            default:
                continue
            }
        }
        if kind == .broadcast && keyString != HeraldStream.broadcastKey {
            throw HeraldRecordError(.invalidKey, "a broadcast record must have the key \"*\"")
        }
        record.stream = HeraldStream(key: keyString, kind: kind)
        if record.control != nil, kind != .user {
            throw HeraldRecordError(.invalidHeader, "herald-control applies to a user's stream only")
        }
        if record.revokeBefore != nil, record.control != .disconnect {
            throw HeraldRecordError(.invalidHeader, "herald-revoke-before belongs on a disconnect control record only")
        }
        return record
    }
}

/// What a control record asks every node to do.
public enum HeraldControl: String, Sendable, Hashable {
    /// Close every connection of the user named by the key, with 4003 (kicked).
    case disconnect
}

/// Why a consumed record could not be read as a Herald message.
public struct HeraldRecordError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        public static let missingKey = Code("missing-key")
        public static let invalidKey = Code("invalid-key")
        public static let invalidHeader = Code("invalid-header")
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
