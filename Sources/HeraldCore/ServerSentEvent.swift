public import NIOCore

/// Server frames as Server-Sent Events (the WHATWG `text/event-stream` format), for connections that
/// cannot hold a WebSocket (docs/protocol.md, "Server-Sent Events"). A frame's JSON becomes an event's `data:` lines; the
/// `id:` line, which carries the connection's own resume cursor, is written per connection after them.
/// The data lines of a record are encoded once per record, like its WebSocket frame.
public enum ServerSentEvent {
    /// A comment line: proxies see traffic, `EventSource` ignores it.
    public static let heartbeat = ByteBuffer(string: ": heartbeat\n\n")
    /// Ends an event that has no `id:` line (an `error` frame: the client's last event id stays).
    public static let endOfEvent = ByteBuffer(string: "\n")

    /// The `data:` lines of an event carrying `json`, without the blank line that ends the event. A line
    /// break (CR, LF or CRLF) may occur only as JSON whitespace, so each one starts a new `data:` line;
    /// the client joins them with LF, which is whitespace too.
    public static func dataLines(_ json: ByteBuffer, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var out = allocator.buffer(capacity: json.readableBytes + 16)
        out.writeStaticString("data: ")
        json.withUnsafeReadableBytes { bytes in
            var start = 0
            var index = 0
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") {
                    out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[start..<index]))
                    out.writeStaticString("\ndata: ")
                    if byte == UInt8(ascii: "\r"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "\n") { index += 1 }
                    start = index + 1
                }
                index += 1
            }
            out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[start..<bytes.count]))
        }
        out.writeInteger(UInt8(ascii: "\n"))
        return out
    }

    /// The data lines of a server text frame (`ServerFrame.build(.text)`), or nil for another frame.
    public static func dataLines(ofTextFrame frame: ByteBuffer, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer? {
        guard let (opcode, payload) = ServerFrame.parts(of: frame), opcode == .text else { return nil }
        return dataLines(payload, allocator: allocator)
    }

    /// Whether `buffer` is already an event's data lines rather than a WebSocket frame (whose first
    /// byte has the FIN bit set, which no text byte has).
    public static func isDataLines(_ buffer: ByteBuffer) -> Bool {
        buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) == UInt8(ascii: "d")
    }

    /// The `id:` line and the blank line that end an event.
    public static func idLine(_ id: String) -> ByteBuffer {
        var out = ByteBuffer()
        out.reserveCapacity(id.utf8.count + 6)
        out.writeStaticString("id: ")
        out.writeString(id)
        out.writeStaticString("\n\n")
        return out
    }

    /// The last event of a stream the server ends: `event: close` with the close code and reason of
    /// the `Disconnect` catalogue, as a WebSocket close frame would carry them.
    public static func close(code: UInt16, reason: String) -> ByteBuffer {
        var json = ByteBuffer()
        json.writeStaticString(#"{"type":"close","code":"#)
        json.writeString(String(code))
        json.writeStaticString(#","reason":"#)
        json.writeJSONString(reason)
        json.writeInteger(UInt8(ascii: "}"))
        var out = ByteBuffer(string: "event: close\n")
        var lines = dataLines(json)
        out.writeBuffer(&lines)
        out.writeInteger(UInt8(ascii: "\n"))
        return out
    }
}

extension ServerFrame {
    /// The opcode and payload of a frame this server built (unmasked, final), or nil if `frame` is not one.
    public static func parts(of frame: ByteBuffer) -> (opcode: Opcode, payload: ByteBuffer)? {
        guard let first = frame.getInteger(at: frame.readerIndex, as: UInt8.self), first & 0x80 != 0,
              let opcode = Opcode(rawValue: first & 0x0F),
              let second = frame.getInteger(at: frame.readerIndex + 1, as: UInt8.self), second & 0x80 == 0 else { return nil }
        var header = 2
        var length: Int
        switch second {
        case 126:
            guard let extended = frame.getInteger(at: frame.readerIndex + 2, as: UInt16.self) else { return nil }
            header = 4
            length = Int(extended)
        case 127:
            guard let extended = frame.getInteger(at: frame.readerIndex + 2, as: UInt64.self), extended <= UInt64(Int.max) else { return nil }
            header = 10
            length = Int(extended)
        default:
            length = Int(second)
        }
        guard frame.readableBytes - header >= length,
              let payload = frame.getSlice(at: frame.readerIndex + header, length: length) else { return nil }
        return (opcode, payload)
    }
}
