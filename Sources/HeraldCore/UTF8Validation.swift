/// Strict UTF-8 validation (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
///
/// WebSocket text frames must be valid UTF-8 (RFC 6455 §8.1, close 1007), and a fragmented message
/// may split a character across frames, so validation keeps its state between chunks.
public struct UTF8Validation: Sendable {
    private var needed = 0
    private var lowerBound: UInt8 = 0x80
    private var upperBound: UInt8 = 0xBF

    public init() {}

    /// Whether the bytes seen so far can still be the start of valid UTF-8.
    public mutating func consume<Bytes: Sequence>(_ bytes: Bytes) -> Bool where Bytes.Element == UInt8 {
        for byte in bytes {
            if needed == 0 {
                switch byte {
                case 0x00...0x7F: continue
                case 0xC2...0xDF: needed = 1
                case 0xE0: needed = 2; lowerBound = 0xA0
                case 0xE1...0xEC, 0xEE...0xEF: needed = 2
                case 0xED: needed = 2; upperBound = 0x9F
                case 0xF0: needed = 3; lowerBound = 0x90
                case 0xF1...0xF3: needed = 3
                case 0xF4: needed = 3; upperBound = 0x8F
                default: return false
                }
            } else {
                guard byte >= lowerBound && byte <= upperBound else { return false }
                lowerBound = 0x80
                upperBound = 0xBF
                needed -= 1
            }
        }
        return true
    }

    /// Whether everything consumed is complete, valid UTF-8 (no character cut off at the end).
    public var isComplete: Bool { needed == 0 }

    public static func isValid<Bytes: Sequence>(_ bytes: Bytes) -> Bool where Bytes.Element == UInt8 {
        var validation = UTF8Validation()
        return validation.consume(bytes) && validation.isComplete
    }

    /// The length of the valid multi-byte sequence starting at `index`, or nil.
    static func sequenceLength(_ input: UnsafeBufferPointer<UInt8>, at index: Int) -> Int? {
        var validation = UTF8Validation()
        var position = index
        repeat {
            guard position < input.count, validation.consume(CollectionOfOne(input[position])) else { return nil }
            position += 1
        } while !validation.isComplete
        return position - index
    }
}
