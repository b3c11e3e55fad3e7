/// Kafka's murmur2 hash, bit for bit as the Java client's `Utils.murmur2`, and the partition it picks.
///
/// Herald must agree with every producer on the topic (librdkafka with `partitioner=murmur2_random`,
/// the Java client's default partitioner, kcat) about which partition a key lives in: a stream's
/// position is one offset in one partition, so a disagreement would split a stream in two.
public enum Murmur2 {
    private static let seed: UInt32 = 0x9747_b28c
    private static let m: UInt32 = 0x5bd1_e995
    private static let r: UInt32 = 24

    /// The 32-bit hash, as the Java client returns it (a signed int).
    public static func hash<Bytes: Collection>(_ data: Bytes) -> Int32 where Bytes.Element == UInt8 {
        let bytes = Array(data)
        let length = bytes.count
        var h: UInt32 = seed ^ UInt32(truncatingIfNeeded: length)
        let blocks = length / 4

        for i in 0..<blocks {
            let base = i * 4
            var k = UInt32(bytes[base])
                | UInt32(bytes[base + 1]) << 8
                | UInt32(bytes[base + 2]) << 16
                | UInt32(bytes[base + 3]) << 24
            k = k &* m
            k ^= k >> r
            k = k &* m
            h = h &* m
            h ^= k
        }

        let tail = blocks * 4
        switch length & 3 {
        case 3:
            h ^= UInt32(bytes[tail + 2]) << 16
            fallthrough
        case 2:
            h ^= UInt32(bytes[tail + 1]) << 8
            fallthrough
        case 1:
            h ^= UInt32(bytes[tail])
            h = h &* m
        default:
            break
        }

        h ^= h >> 13
        h = h &* m
        h ^= h >> 15
        return Int32(bitPattern: h)
    }

    /// The partition Kafka's default partitioner (and librdkafka's `murmur2_random`) assigns to a key:
    /// `toPositive(murmur2(key)) % partitionCount`.
    public static func partition<Bytes: Collection>(forKey key: Bytes, partitionCount: Int32) -> Int32
    where Bytes.Element == UInt8 {
        precondition(partitionCount > 0, "a topic has at least one partition")
        let positive = hash(key) & 0x7fff_ffff
        return positive % partitionCount
    }

    public static func partition(forKey key: String, partitionCount: Int32) -> Int32 {
        partition(forKey: key.utf8, partitionCount: partitionCount)
    }
}
