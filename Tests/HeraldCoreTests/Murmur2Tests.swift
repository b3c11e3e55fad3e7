import HeraldCore
import Testing

@Suite("Kafka's murmur2, bit for bit")
struct Murmur2Tests {
    // The vectors published in Apache Kafka's UtilsTest.testMurmur2 (Java's signed ints).
    @Test(arguments: [
        ("21", Int32(-973_932_308)),
        ("foobar", Int32(-790_332_482)),
        ("a-little-bit-long-string", Int32(-985_981_536)),
        ("a-little-bit-longer-string", Int32(-1_486_304_829)),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", Int32(-58_897_971)),
        ("abc", Int32(479_470_107)),
    ])
    func javaVectors(input: String, expected: Int32) {
        #expect(Murmur2.hash(Array(input.utf8)) == expected)
    }

    @Test func partitionIsToPositiveModulo() {
        // Java's toPositive masks the sign bit rather than taking an absolute value.
        let hash = Murmur2.hash(Array("21".utf8))
        let expected = (hash & 0x7fff_ffff) % 12
        #expect(Murmur2.partition(forKey: "21", partitionCount: 12) == expected)
        #expect(Murmur2.partition(forKey: "21", partitionCount: 1) == 0)
    }

    @Test func partitionsStayInRangeForEveryTail() {
        for length in 0..<64 {
            let key = String(repeating: "k", count: length)
            let partition = Murmur2.partition(forKey: key, partitionCount: 7)
            #expect((0..<7).contains(partition))
        }
    }
}
