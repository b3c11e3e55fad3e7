package import HeraldClient

/// A small, seeded generator, so a failing run can be repeated exactly (`HERALD_TEST_SEED`).
package struct SplitMix64: RandomNumberGenerator {
    package var state: UInt64
    package init(state: UInt64) { self.state = state }
    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// What a device has seen, per stream, as it would keep it: the welcome's positions advanced by each message.
package struct DeviceCursor {
    package var positions: [String: Int64]

    package init(_ welcome: ServerEvent.Welcome) { positions = welcome.positions }

    package mutating func saw(_ message: ServerEvent.Message) { positions[message.stream] = message.offset }

    package var text: String { positions.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }.joined(separator: ",") }
}
