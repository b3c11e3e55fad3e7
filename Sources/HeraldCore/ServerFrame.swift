public import NIOCore

/// Builds complete WebSocket frames (header and payload) as a server sends them: unmasked, final, so
/// the bytes are the same for every recipient and a frame is encoded once for all of them.
public enum ServerFrame {
    public enum Opcode: UInt8, Sendable {
        case text = 0x1
        case binary = 0x2
        case close = 0x8
        case ping = 0x9
        case pong = 0xA
    }

    /// The most header bytes a server frame needs (2 + 8-byte extended length).
    public static let maxHeaderLength = 10

    /// Builds a frame whose payload `writePayload` appends to a buffer. The header is written in front
    /// of the payload afterwards, into space reserved for it, so the payload is never copied.
    public static func build(
        _ opcode: Opcode, allocator: ByteBufferAllocator = ByteBufferAllocator(), capacity: Int = 256,
        _ writePayload: (inout ByteBuffer) -> Void
    ) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: capacity + maxHeaderLength)
        buffer.moveWriterIndex(forwardBy: maxHeaderLength)
        buffer.moveReaderIndex(forwardBy: maxHeaderLength)
        writePayload(&buffer)
        let length = buffer.readableBytes
        let headerLength = length < 126 ? 2 : (length <= 0xFFFF ? 4 : 10)
        let start = maxHeaderLength - headerLength
        buffer.setInteger(0x80 | opcode.rawValue, at: start)
        switch headerLength {
        case 2:
            buffer.setInteger(UInt8(length), at: start + 1)
        case 4:
            buffer.setInteger(UInt8(126), at: start + 1)
            buffer.setInteger(UInt16(length), at: start + 2)
        default:
            buffer.setInteger(UInt8(127), at: start + 1)
            buffer.setInteger(UInt64(length), at: start + 2)
        }
        buffer.moveReaderIndex(to: start)
        return buffer
    }

    /// A close frame with a status code and a reason (cut to fit the 125-byte control-frame limit).
    public static func close(code: UInt16, reason: String) -> ByteBuffer {
        build(.close, capacity: 125) { buffer in
            buffer.writeInteger(code)
            var utf8 = Array(reason.utf8.prefix(123))
            while !UTF8Validation.isValid(utf8) { utf8.removeLast() }
            buffer.writeBytes(utf8)
        }
    }

    public static func control(_ opcode: Opcode, payload: ByteBuffer? = nil) -> ByteBuffer {
        build(opcode, capacity: 125) { buffer in
            if var payload { buffer.writeBuffer(&payload) }
        }
    }
}
