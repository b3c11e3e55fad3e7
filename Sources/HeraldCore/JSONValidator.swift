/// Decides whether bytes are exactly one JSON value (RFC 8259), without building it.
///
/// A record without `herald-content-type` is JSON when its value parses as JSON (docs/protocol.md §1), and
/// JSON is embedded in the `message` frame as it is, so this runs once per record on the delivery
/// path: it allocates nothing and reads each byte once. Nesting deeper than `maxDepth` counts as not
/// JSON, so that no producer can make a node recurse without bound.
public enum JSONValidator {
    public static let maxDepth = 64

    public static func isJSON<Bytes: Collection>(_ bytes: Bytes) -> Bool where Bytes.Element == UInt8 {
        if let result = bytes.withContiguousStorageIfAvailable({ validate($0) }) {
            return result
        }
        return Array(bytes).withUnsafeBufferPointer { validate($0) }
    }

    private static func validate(_ input: UnsafeBufferPointer<UInt8>) -> Bool {
        var parser = Parser(input: input)
        parser.skipWhitespace()
        guard parser.value(depth: 0) else { return false }
        parser.skipWhitespace()
        return parser.index == input.count
    }

    struct Parser {
        let input: UnsafeBufferPointer<UInt8>
        var index = 0

        var current: UInt8? { index < input.count ? input[index] : nil }

        mutating func skipWhitespace() {
            while let byte = current, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { index += 1 }
        }

        mutating func literal(_ text: StaticString) -> Bool {
            let count = text.utf8CodeUnitCount
            guard index + count <= input.count else { return false }
            for offset in 0..<count where input[index + offset] != text.utf8Start[offset] { return false }
            index += count
            return true
        }

        mutating func value(depth: Int) -> Bool {
            guard depth < JSONValidator.maxDepth, let byte = current else { return false }
            switch byte {
            case UInt8(ascii: "{"): return object(depth: depth + 1)
            case UInt8(ascii: "["): return array(depth: depth + 1)
            case UInt8(ascii: "\""): return string()
            case UInt8(ascii: "t"): return literal("true")
            case UInt8(ascii: "f"): return literal("false")
            case UInt8(ascii: "n"): return literal("null")
            default: return number()
            }
        }

        mutating func object(depth: Int) -> Bool {
            index += 1
            skipWhitespace()
            if current == UInt8(ascii: "}") { index += 1; return true }
            while true {
                skipWhitespace()
                guard current == UInt8(ascii: "\""), string() else { return false }
                skipWhitespace()
                guard current == UInt8(ascii: ":") else { return false }
                index += 1
                skipWhitespace()
                guard value(depth: depth) else { return false }
                skipWhitespace()
                switch current {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "}"): index += 1; return true
                default: return false
                }
            }
        }

        mutating func array(depth: Int) -> Bool {
            index += 1
            skipWhitespace()
            if current == UInt8(ascii: "]") { index += 1; return true }
            while true {
                skipWhitespace()
                guard value(depth: depth) else { return false }
                skipWhitespace()
                switch current {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "]"): index += 1; return true
                default: return false
                }
            }
        }

        /// A string, including the check that it is valid UTF-8 (a JSON text must be).
        mutating func string() -> Bool {
            index += 1
            while let byte = current {
                switch byte {
                case UInt8(ascii: "\""):
                    index += 1
                    return true
                case UInt8(ascii: "\\"):
                    index += 1
                    guard let escaped = current else { return false }
                    switch escaped {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                         UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        index += 1
                    case UInt8(ascii: "u"):
                        index += 1
                        for _ in 0..<4 {
                            guard let hex = current, hex.isHexDigit else { return false }
                            index += 1
                        }
                    default:
                        return false
                    }
                case 0..<0x20:
                    return false
                case 0x20..<0x80:
                    index += 1
                default:
                    guard let length = UTF8Validation.sequenceLength(input, at: index) else { return false }
                    index += length
                }
            }
            return false
        }

        mutating func number() -> Bool {
            let start = index
            if current == UInt8(ascii: "-") { index += 1 }
            guard let first = current, first.isDigit else { return false }
            index += 1
            if first != UInt8(ascii: "0") {
                while let digit = current, digit.isDigit { index += 1 }
            }
            if current == UInt8(ascii: ".") {
                index += 1
                guard let digit = current, digit.isDigit else { return false }
                while let digit = current, digit.isDigit { index += 1 }
            }
            if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
                index += 1
                if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
                guard let digit = current, digit.isDigit else { return false }
                while let digit = current, digit.isDigit { index += 1 }
            }
            return index > start
        }
    }
}

extension UInt8 {
    var isDigit: Bool { self >= UInt8(ascii: "0") && self <= UInt8(ascii: "9") }
    var isHexDigit: Bool {
        isDigit || (self >= UInt8(ascii: "a") && self <= UInt8(ascii: "f")) || (self >= UInt8(ascii: "A") && self <= UInt8(ascii: "F"))
    }
}

/// Byte ranges of the members of a JSON object and the elements of a JSON array, so that a value can
/// be passed on exactly as it was written (the push API embeds `data` byte for byte).
public enum JSONSpans {
    /// The members of the object that `bytes[range]` holds, by key, or nil if it is not a JSON object.
    public static func objectMembers(_ bytes: [UInt8], in range: Range<Int>? = nil) -> [String: Range<Int>]? {
        bytes.withUnsafeBufferPointer { buffer in
            let range = range ?? 0..<buffer.count
            var parser = JSONValidator.Parser(input: UnsafeBufferPointer(rebasing: buffer[range]))
            parser.skipWhitespace()
            guard parser.current == UInt8(ascii: "{") else { return nil }
            var members: [String: Range<Int>] = [:]
            parser.index += 1
            parser.skipWhitespace()
            if parser.current == UInt8(ascii: "}") {
                parser.index += 1
                parser.skipWhitespace()
                return parser.index == parser.input.count ? members : nil
            }
            while true {
                parser.skipWhitespace()
                let keyStart = parser.index
                guard parser.current == UInt8(ascii: "\""), parser.string() else { return nil }
                let keyBytes = Array(parser.input[(keyStart + 1)..<(parser.index - 1)])
                guard let key = decodeKey(keyBytes) else { return nil }
                parser.skipWhitespace()
                guard parser.current == UInt8(ascii: ":") else { return nil }
                parser.index += 1
                parser.skipWhitespace()
                let valueStart = parser.index
                guard parser.value(depth: 1) else { return nil }
                members[key] = (range.lowerBound + valueStart)..<(range.lowerBound + parser.index)
                parser.skipWhitespace()
                switch parser.current {
                case UInt8(ascii: ","): parser.index += 1
                case UInt8(ascii: "}"):
                    parser.index += 1
                    parser.skipWhitespace()
                    return parser.index == parser.input.count ? members : nil
                default: return nil
                }
            }
        }
    }

    /// The elements of the array that `bytes[range]` holds, or nil if it is not a JSON array.
    public static func arrayElements(_ bytes: [UInt8], in range: Range<Int>) -> [Range<Int>]? {
        bytes.withUnsafeBufferPointer { buffer in
            var parser = JSONValidator.Parser(input: UnsafeBufferPointer(rebasing: buffer[range]))
            parser.skipWhitespace()
            guard parser.current == UInt8(ascii: "[") else { return nil }
            var elements: [Range<Int>] = []
            parser.index += 1
            parser.skipWhitespace()
            if parser.current == UInt8(ascii: "]") { return elements }
            while true {
                parser.skipWhitespace()
                let start = parser.index
                guard parser.value(depth: 1) else { return nil }
                elements.append((range.lowerBound + start)..<(range.lowerBound + parser.index))
                parser.skipWhitespace()
                switch parser.current {
                case UInt8(ascii: ","): parser.index += 1
                case UInt8(ascii: "]"): return elements
                default: return nil
                }
            }
        }
    }

    private static func decodeKey(_ bytes: [UInt8]) -> String? {
        guard bytes.contains(UInt8(ascii: "\\")) else { return String(validating: bytes, as: UTF8.self) }
        // Escaped keys are rare: decode them as a JSON string literal would be.
        var iterator = bytes.makeIterator()
        var scalars: [UInt8] = []
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "\\") else { scalars.append(byte); continue }
            guard let escaped = iterator.next() else { return nil }
            switch escaped {
            case UInt8(ascii: "n"): scalars.append(0x0A)
            case UInt8(ascii: "t"): scalars.append(0x09)
            case UInt8(ascii: "r"): scalars.append(0x0D)
            case UInt8(ascii: "b"): scalars.append(0x08)
            case UInt8(ascii: "f"): scalars.append(0x0C)
            case UInt8(ascii: "u"):
                var hex = ""
                for _ in 0..<4 { guard let digit = iterator.next() else { return nil }; hex.append(Character(Unicode.Scalar(digit))) }
                guard let code = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(code) else { return nil }
                scalars.append(contentsOf: Array(String(Character(scalar)).utf8))
            default: scalars.append(escaped)
            }
        }
        return String(decoding: scalars, as: UTF8.self)
    }
}
