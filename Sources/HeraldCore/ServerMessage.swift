public import NIOCore

/// The JSON frames a server sends (docs/protocol.md §2), written by hand into the frame buffer: the message
/// frame is built once per record on the delivery path and shared by every recipient.
public enum ServerMessage {
    /// A `message` frame. The payload is embedded as JSON, as a JSON string, or as base64, following
    /// its content type (docs/protocol.md §1); JSON is embedded only if it really is JSON, so that a
    /// producer's mislabelled record cannot break every client's parser. `user` is the record's
    /// `herald-user`: who published it into a channel.
    public static func message(
        stream: String, offset: Int64, id: String?, payload: ByteBuffer, contentType: HeraldContentType?,
        user: String? = nil, allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) -> ByteBuffer {
        let representation = Representation(payload: payload, declared: contentType)
        let capacity = 64 + stream.utf8.count + (id?.utf8.count ?? 0) + (user?.utf8.count ?? 0)
            + payload.readableBytes * (representation == .base64 ? 2 : 1)
        return ServerFrame.build(.text, allocator: allocator, capacity: capacity) { buffer in
            writeMessage(into: &buffer, stream: stream, offset: offset, id: id, user: user, payload: payload, representation: representation)
        }
    }

    /// The JSON object of a `message` frame, as a live frame and as an element of a history answer.
    public static func writeMessage(
        into buffer: inout ByteBuffer, stream: String, offset: Int64, id: String?, user: String? = nil, payload: ByteBuffer,
        contentType: HeraldContentType?
    ) {
        writeMessage(into: &buffer, stream: stream, offset: offset, id: id, user: user, payload: payload,
                     representation: Representation(payload: payload, declared: contentType))
    }

    private static func writeMessage(
        into buffer: inout ByteBuffer, stream: String, offset: Int64, id: String?, user: String? = nil, payload: ByteBuffer,
        representation: Representation
    ) {
        buffer.writeStaticString(#"{"type":"message","stream":"#)
        buffer.writeJSONString(stream)
        buffer.writeStaticString(#","offset":"#)
        buffer.writeString(String(offset))
        if let id {
            buffer.writeStaticString(#","id":"#)
            buffer.writeJSONString(id)
        }
        if let user {
            buffer.writeStaticString(#","user":"#)
            buffer.writeJSONString(user)
        }
        buffer.writeStaticString(#","data":"#)
        switch representation {
        case .json:
            var payload = payload
            buffer.writeBuffer(&payload)
        case .text:
            payload.withUnsafeReadableBytes { buffer.writeJSONString(utf8: $0) }
        case .base64:
            buffer.writeInteger(UInt8(ascii: "\""))
            payload.withUnsafeReadableBytes { buffer.writeBase64($0) }
            buffer.writeStaticString(#"","encoding":"base64""#)
        }
        buffer.writeInteger(UInt8(ascii: "}"))
    }

    enum Representation {
        case json, text, base64

        init(payload: ByteBuffer, declared: HeraldContentType?) {
            self = payload.withUnsafeReadableBytes { bytes in
                switch declared {
                case .binary: return .base64
                case .text: return UTF8Validation.isValid(bytes) ? .text : .base64
                case .json, nil:
                    if JSONValidator.isJSON(bytes) { return .json }
                    return UTF8Validation.isValid(bytes) ? .text : .base64
                }
            }
        }
    }

    /// The welcome's `source` when the resume came from the device's committed cursor, not the client's.
    public static let storedCursorSource = "stored-cursor"

    /// The `welcome` frame, always a connection's first. `source` says where a resume's cursor came
    /// from when the client did not send it (`storedCursorSource`).
    public static func welcome(
        node: String, session: String, epoch: String, positions: [(stream: String, offset: Int64)],
        recovered: Bool? = nil, reason: String? = nil, source: String? = nil
    ) -> ByteBuffer {
        ServerFrame.build(.text) { buffer in
            buffer.writeStaticString(#"{"type":"welcome","node":"#)
            buffer.writeJSONString(node)
            buffer.writeStaticString(#","session":"#)
            buffer.writeJSONString(session)
            buffer.writeStaticString(#","epoch":"#)
            buffer.writeJSONString(epoch)
            buffer.writeStaticString(#","positions":{"#)
            for (index, position) in positions.enumerated() {
                if index > 0 { buffer.writeInteger(UInt8(ascii: ",")) }
                buffer.writeJSONString(position.stream)
                buffer.writeInteger(UInt8(ascii: ":"))
                buffer.writeString(String(position.offset))
            }
            buffer.writeInteger(UInt8(ascii: "}"))
            if let recovered {
                buffer.writeStaticString(recovered ? #","recovered":true"# : #","recovered":false"#)
            }
            if let reason {
                buffer.writeStaticString(#","reason":"#)
                buffer.writeJSONString(reason)
            }
            if let source {
                buffer.writeStaticString(#","source":"#)
                buffer.writeJSONString(source)
            }
            buffer.writeInteger(UInt8(ascii: "}"))
        }
    }

    /// An `error` frame: `code` is a short machine-readable word, `message` says what was wrong; `id`
    /// names the client's publish it is about, when that publish carried one.
    public static func error(code: String, message: String, id: String? = nil) -> ByteBuffer {
        ServerFrame.build(.text) { buffer in
            buffer.writeStaticString(#"{"type":"error","code":"#)
            buffer.writeJSONString(code)
            buffer.writeStaticString(#","message":"#)
            buffer.writeJSONString(message)
            if let id {
                buffer.writeStaticString(#","id":"#)
                buffer.writeJSONString(id)
            }
            buffer.writeInteger(UInt8(ascii: "}"))
        }
    }

    /// A `refreshed` frame: the connection's new token was accepted; `expiresAt` is its `exp` in Unix
    /// milliseconds (the push API's `expires_at` unit), from which on the connection is closed with 4009 unless it refreshes again.
    public static func refreshed(expiresAt: Int64) -> ByteBuffer {
        ServerFrame.build(.text) { buffer in
            buffer.writeStaticString(#"{"type":"refreshed","expires_at":"#)
            buffer.writeString(String(expiresAt))
            buffer.writeInteger(UInt8(ascii: "}"))
        }
    }

    /// A `history` frame: the answer to the client's `history` request named `id`.
    public static func history(id: String, page: HistoryPage) -> ByteBuffer {
        ServerFrame.build(.text, capacity: 160 + id.utf8.count + page.stream.utf8.count + page.messageBytes) { buffer in
            buffer.writeStaticString(#"{"type":"history","id":"#)
            buffer.writeJSONString(id)
            buffer.writeInteger(UInt8(ascii: ","))
            page.writeMembers(into: &buffer)
            buffer.writeInteger(UInt8(ascii: "}"))
        }
    }

    /// A `published` frame: Kafka acknowledged the publish the client named `id`. With `sync`, the
    /// position its copy took in the user's own stream (`stream` is then `u`), which the user's other
    /// devices receive it at.
    public static func published(id: String, stream: String? = nil, offset: Int64? = nil) -> ByteBuffer {
        ServerFrame.build(.text) { buffer in
            buffer.writeStaticString(#"{"type":"published","id":"#)
            buffer.writeJSONString(id)
            if let stream, let offset {
                buffer.writeStaticString(#","stream":"#)
                buffer.writeJSONString(stream)
                buffer.writeStaticString(#","offset":"#)
                buffer.writeString(String(offset))
            }
            buffer.writeInteger(UInt8(ascii: "}"))
        }
    }
}

extension ByteBuffer {
    /// Writes `string` as a JSON string literal, quotes included.
    public mutating func writeJSONString(_ string: String) {
        var string = string
        string.withUTF8 { writeJSONString(utf8: UnsafeRawBufferPointer($0)) }
    }

    /// Writes valid UTF-8 bytes as a JSON string literal, escaping what JSON requires.
    mutating func writeJSONString(utf8 bytes: UnsafeRawBufferPointer) {
        writeInteger(UInt8(ascii: "\""))
        var runStart = 0
        for (index, byte) in bytes.enumerated() {
            let escape: StaticString?
            switch byte {
            case UInt8(ascii: "\""): escape = "\\\""
            case UInt8(ascii: "\\"): escape = "\\\\"
            case 0x0A: escape = "\\n"
            case 0x0D: escape = "\\r"
            case 0x09: escape = "\\t"
            case 0x00..<0x20: escape = nil
            default: continue
            }
            if index > runStart { writeBytes(UnsafeRawBufferPointer(rebasing: bytes[runStart..<index])) }
            if let escape {
                writeStaticString(escape)
            } else {
                let hex = ("0123456789abcdef" as StaticString).utf8Start
                writeStaticString("\\u00")
                writeInteger(hex[Int(byte >> 4)])
                writeInteger(hex[Int(byte & 0xF)])
            }
            runStart = index + 1
        }
        if bytes.count > runStart { writeBytes(UnsafeRawBufferPointer(rebasing: bytes[runStart..<bytes.count])) }
        writeInteger(UInt8(ascii: "\""))
    }

    /// Writes standard base64 (RFC 4648 §4, with padding).
    mutating func writeBase64(_ bytes: UnsafeRawBufferPointer) {
        let alphabet: StaticString = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        let table = alphabet.utf8Start
        var index = 0
        while index + 3 <= bytes.count {
            let value = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            writeQuad(table[Int(value >> 18 & 63)], table[Int(value >> 12 & 63)], table[Int(value >> 6 & 63)], table[Int(value & 63)])
            index += 3
        }
        switch bytes.count - index {
        case 1:
            let value = UInt32(bytes[index]) << 16
            writeQuad(table[Int(value >> 18 & 63)], table[Int(value >> 12 & 63)], UInt8(ascii: "="), UInt8(ascii: "="))
        case 2:
            let value = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8
            writeQuad(table[Int(value >> 18 & 63)], table[Int(value >> 12 & 63)], table[Int(value >> 6 & 63)], UInt8(ascii: "="))
        default:
            break
        }
    }

    private mutating func writeQuad(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        writeInteger(UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d))
    }
}
