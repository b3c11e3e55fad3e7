import HeraldCore
import Testing

@Suite("The record format of docs/protocol.md §1")
struct HeraldRecordTests {
    @Test func plainKeyIsAUserMessage() throws {
        let record = try HeraldRecord.decode(key: Array("alice".utf8), headers: [])
        #expect(record.stream == .user("alice"))
        #expect(record.stream.wireName == "u")
        #expect(record.id == nil && record.contentType == nil && record.exclude == nil && record.expiresAt == nil)
    }

    @Test(arguments: [
        HeraldStream.user("bob"), .channel("news"), .broadcast,
    ])
    func headersRoundTrip(stream: HeraldStream) throws {
        let original = HeraldRecord(stream: stream, id: "m-1", contentType: .text, exclude: "session-9", expiresAt: 1_800_000_000_000)
        let decoded = try HeraldRecord.decode(key: Array(original.key.utf8), headers: original.headers)
        #expect(decoded == original)
    }

    @Test("a client's channel publish names its publisher in herald-user, which must be a non-empty UTF-8 user id")
    func publisher() throws {
        let original = HeraldRecord(stream: .channel("video:1"), id: "c-1", contentType: .json, user: "alice")
        #expect(original.headers.contains(HeraldHeader(name: "herald-user", string: "alice")))
        #expect(try HeraldRecord.decode(key: Array(original.key.utf8), headers: original.headers) == original)
        let kind = HeraldHeader(name: HeraldHeader.kind, string: "channel")
        for bad in [HeraldHeader(name: "herald-user", value: []), HeraldHeader(name: "herald-user", value: [0xFF])] {
            #expect(throws: HeraldRecordError.self) { try HeraldRecord.decode(key: Array("video:1".utf8), headers: [kind, bad]) }
        }
    }

    @Test func userStreamCarriesNoKindHeader() {
        let headers = HeraldRecord(stream: .user("alice")).headers
        #expect(!headers.contains { $0.name == HeraldHeader.kind })
        #expect(HeraldRecord(stream: .channel("news")).headers.contains(HeraldHeader(name: "herald-kind", string: "channel")))
    }

    @Test func wireNamesAndKeys() {
        #expect(HeraldStream.channel("news").wireName == "c:news")
        #expect(HeraldStream.channel("news").kafkaKey == "news")
        #expect(HeraldStream.broadcast.wireName == "*")
        #expect(HeraldStream.broadcast.kafkaKey == "*")
        #expect(HeraldStream.user("alice").kafkaKey == "alice")
    }

    @Test func unknownHeadersAreIgnored() throws {
        let record = try HeraldRecord.decode(
            key: Array("alice".utf8), headers: [HeraldHeader(name: "traceparent", string: "00-abc")]
        )
        #expect(record.stream == .user("alice"))
    }

    @Test func expiry() {
        let record = HeraldRecord(stream: .broadcast, expiresAt: 1_000)
        #expect(!record.isExpired(atUnixMillis: 999))
        #expect(record.isExpired(atUnixMillis: 1_000))
        #expect(!HeraldRecord(stream: .broadcast).isExpired(atUnixMillis: .max))
    }

    @Test(arguments: [
        ([UInt8]?.none, [HeraldHeader](), HeraldRecordError.Code.missingKey),
        ([], [], .missingKey),
        ([0xff, 0xfe], [], .invalidKey),
        (Array("alice".utf8), [HeraldHeader(name: "herald-kind", string: "group")], .invalidHeader),
        (Array("alice".utf8), [HeraldHeader(name: "herald-expires-at", string: "soon")], .invalidHeader),
        (Array("alice".utf8), [HeraldHeader(name: "herald-content-type", string: "image/png")], .invalidHeader),
        (Array("alice".utf8), [HeraldHeader(name: "herald-id", value: [0xc3])], .invalidHeader),
        (Array("news".utf8), [HeraldHeader(name: "herald-kind", string: "broadcast")], .invalidKey),
        (Array("alice".utf8), [HeraldHeader(name: "herald-control", string: "disconnect"), HeraldHeader(name: "herald-revoke-before", string: "-5")], .invalidHeader),
        (Array("alice".utf8), [HeraldHeader(name: "herald-control", string: "disconnect"), HeraldHeader(name: "herald-revoke-before", string: "99999999999999999999")], .invalidHeader),
        (Array("alice".utf8), [HeraldHeader(name: "herald-revoke-before", string: "1800000000000")], .invalidHeader),
    ])
    func malformedRecordsAreNamed(key: [UInt8]?, headers: [HeraldHeader], code: HeraldRecordError.Code) {
        #expect {
            try HeraldRecord.decode(key: key, headers: headers)
        } throws: { error in
            (error as? HeraldRecordError)?.code == code
        }
    }

    @Test("a kick with revocation round-trips: control disconnect and herald-revoke-before")
    func revocationRoundTrip() throws {
        let record = HeraldRecord(stream: .user("bob@example.com"), control: .disconnect, revokeBefore: 1_800_000_000_123)
        let decoded = try HeraldRecord.decode(key: Array(record.key.utf8), headers: record.headers)
        #expect(decoded == record)
    }
}
