public import NIOCore

/// One answer to a history request (docs/protocol.md §5): the newest messages of a stream before an
/// offset, oldest first, and what a caller needs to be told about what it did not get.
public struct HistoryPage: Sendable {
    /// Why a page holds fewer messages than were asked for although older ones may exist.
    public enum Cut: String, Sendable {
        /// More were asked for than the node answers at once (`--history-max-messages`).
        case count
        /// The next older message would have taken the answer over its byte bound (`--history-max-bytes`).
        case bytes
        /// The read looked at as many records of the partition as one answer may (other streams share it).
        case scan
    }

    /// One message: its offset and its `message` object, already written as JSON.
    public struct Message: Sendable {
        public var offset: Int64
        public var json: ByteBuffer

        public init(offset: Int64, json: ByteBuffer) {
            self.offset = offset
            self.json = json
        }
    }

    /// The stream as the request named it.
    public var stream: String
    public var partition: Int32
    /// Oldest first.
    public var messages: [Message]
    /// The oldest offset the partition still holds (its log start): anything of the stream before it
    /// is gone, whatever a caller asks.
    public var earliest: Int64
    /// The exclusive upper bound that was read: `before`, or the end of the log when that is lower.
    public var end: Int64
    /// The `before` that asks for the page before this one; nil when this one reached `earliest`.
    public var next: Int64?
    /// Set when a bound stopped the read (with the bound's value in `limit`).
    public var cut: Cut?
    public var limit: Int?
    /// The read reached the log start and the log no longer starts at 0: older messages of the stream
    /// may have existed and been removed by retention.
    public var expired: Bool

    public init(
        stream: String, partition: Int32, messages: [Message], earliest: Int64, end: Int64, next: Int64?,
        cut: Cut? = nil, limit: Int? = nil, expired: Bool
    ) {
        self.stream = stream
        self.partition = partition
        self.messages = messages
        self.earliest = earliest
        self.end = end
        self.next = next
        self.cut = cut
        self.limit = limit
        self.expired = expired
    }

    /// Bytes of the messages' JSON: what the byte bound counts.
    public var messageBytes: Int { messages.reduce(0) { $0 + $1.json.readableBytes } }

    /// The answer's members after `{` (with `id` first when the request carried one), without the
    /// closing brace: the HTTP body and the `history` frame are the same object, the frame with its type.
    public func writeMembers(into buffer: inout ByteBuffer) {
        buffer.writeStaticString(#""stream":"#)
        buffer.writeJSONString(stream)
        buffer.writeStaticString(#","partition":"#)
        buffer.writeString(String(partition))
        buffer.writeStaticString(#","messages":["#)
        for (index, message) in messages.enumerated() {
            if index > 0 { buffer.writeInteger(UInt8(ascii: ",")) }
            var json = message.json
            buffer.writeBuffer(&json)
        }
        buffer.writeStaticString(#"],"earliest":"#)
        buffer.writeString(String(earliest))
        buffer.writeStaticString(#","end":"#)
        buffer.writeString(String(end))
        buffer.writeStaticString(#","next":"#)
        buffer.writeString(next.map { String($0) } ?? "null")
        if let cut {
            buffer.writeStaticString(#","cut":"#)
            buffer.writeJSONString(cut.rawValue)
            if let limit {
                buffer.writeStaticString(#","limit":"#)
                buffer.writeString(String(limit))
            }
        }
        buffer.writeStaticString(expired ? #","expired":true"# : #","expired":false"#)
    }

    /// The HTTP API's body.
    public func json() -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(128 + messageBytes)
        buffer.writeInteger(UInt8(ascii: "{"))
        writeMembers(into: &buffer)
        buffer.writeInteger(UInt8(ascii: "}"))
        return buffer
    }
}

/// What a history request asks for, checked: the HTTP query and the `history` frame are read into it.
public struct HistoryQuery: Sendable, Equatable {
    /// At least 1; a caller may ask for any number, the node answers at most its bound (`cut: count`).
    public var limit: Int
    /// Exclusive: messages at lower offsets. nil: up to the end of the log.
    public var before: Int64?

    /// The count a request gets when it names none.
    public static let defaultLimit = 50
    /// The highest `before`: what an offset can be.
    public static let maxBefore = Int64.max

    public init(limit: Int = HistoryQuery.defaultLimit, before: Int64? = nil) {
        self.limit = limit
        self.before = before
    }

    /// Reads the decimal text of the HTTP query (`limit`, `before`). Digits only; the length is
    /// checked before the text becomes a number, and a count beyond what an `Int` holds is taken as
    /// "as many as you answer".
    public static func parse(limit: String?, before: String?) throws(ClientMessageError) -> HistoryQuery {
        var query = HistoryQuery()
        if let limit {
            guard isDecimal(limit) else { throw ClientMessageError("limit must be a whole number of 1 or more, not \"\(limit.prefix(40))\"") }
            let digits = limit.drop { $0 == "0" }
            guard !digits.isEmpty else { throw ClientMessageError("limit must be 1 or more") }
            query.limit = digits.count > 18 ? Int.max : Int(digits)!
        }
        if let before {
            guard isDecimal(before) else { throw ClientMessageError("before must be an offset: a whole number of 0 or more, not \"\(before.prefix(40))\"") }
            let digits = before.drop { $0 == "0" }
            if digits.isEmpty {
                query.before = 0
            } else {
                // 19 digits may or may not fit an Int64; compare the text before converting.
                guard digits.count < 19 || (digits.count == 19 && digits <= String(Int64.max)) else {
                    throw ClientMessageError("before must be an offset of at most \(Int64.max)")
                }
                query.before = Int64(digits)!
            }
        }
        return query
    }

    private static func isDecimal(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
    }
}
