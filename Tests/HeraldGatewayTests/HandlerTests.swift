import HeraldCore
@testable import HeraldGateway
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Synchronization
import Testing

/// What a server frame written to an EmbeddedChannel says.
struct WrittenFrame {
    var opcode: UInt8
    var payload: ByteBuffer
    var closeCode: UInt16? {
        guard opcode == 0x8 else { return nil }
        return payload.getInteger(at: payload.readerIndex, as: UInt16.self)
    }
    var text: String { String(buffer: payload) }

    init?(_ buffer: ByteBuffer?) {
        guard var buffer, let first = buffer.readInteger(as: UInt8.self), let second = buffer.readInteger(as: UInt8.self) else { return nil }
        #expect(first & 0x80 != 0, "server frames are final")
        #expect(second & 0x80 == 0, "server frames are not masked")
        var length = Int(second & 0x7F)
        if length == 126 { length = Int(buffer.readInteger(as: UInt16.self)!) } else if length == 127 { length = Int(buffer.readInteger(as: UInt64.self)!) }
        opcode = first & 0x0F
        payload = buffer.readSlice(length: length)!
    }
}

@Suite("WebSocket frame rules on EmbeddedChannel (the echo pipeline)")
struct HandlerTests {
    private func channel(limit: Int = 100) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(EchoHandler(maxMessageBytes: limit))
        return channel
    }

    private func frame(_ opcode: WebSocketOpcode, _ text: String, fin: Bool = true, masked: Bool = true, rsv1: Bool = false) -> WebSocketFrame {
        frame(opcode, Array(text.utf8), fin: fin, masked: masked, rsv1: rsv1)
    }

    private func frame(_ opcode: WebSocketOpcode, _ bytes: [UInt8], fin: Bool = true, masked: Bool = true, rsv1: Bool = false) -> WebSocketFrame {
        // A decoded client frame: the payload arrives masked, with its key.
        let key: WebSocketMaskingKey? = masked ? .random() : nil
        var data = ByteBuffer(bytes: bytes)
        if let key { data.webSocketMask(key) }
        return WebSocketFrame(fin: fin, rsv1: rsv1, opcode: opcode, maskKey: key, data: data)
    }

    private func written(_ channel: EmbeddedChannel) throws -> WrittenFrame? {
        WrittenFrame(try channel.readOutbound(as: ByteBuffer.self))
    }

    @Test func echoesAssembledFragments() throws {
        let channel = try channel()
        try channel.writeInbound(frame(.text, "hel", fin: false))
        try channel.writeInbound(frame(.ping, "p"))
        let pong = try #require(try written(channel))
        #expect(pong.opcode == 0xA && pong.text == "p", "a ping inside a fragmented message is answered at once")
        try channel.writeInbound(frame(.continuation, "lo"))
        let echo = try #require(try written(channel))
        #expect(echo.opcode == 0x1 && echo.text == "hello")
    }

    @Test(arguments: [
        ("unmasked", CloseCode.protocolError),
        ("rsv1", .protocolError),
        ("orphan continuation", .protocolError),
        ("interleaved message", .protocolError),
        ("invalid utf-8", .invalidPayload),
        ("truncated utf-8 at the end", .invalidPayload),
        ("too big", .messageTooBig),
        ("too big in fragments", .messageTooBig),
        ("close code 1005", .protocolError),
        ("close reason not utf-8", .invalidPayload),
        ("close payload of one byte", .protocolError),
    ])
    func refusals(name: String, expected: CloseCode) throws {
        let channel = try channel(limit: 100)
        switch name {
        case "unmasked": try channel.writeInbound(frame(.text, "x", masked: false))
        case "rsv1": try channel.writeInbound(frame(.text, "x", rsv1: true))
        case "orphan continuation": try channel.writeInbound(frame(.continuation, "x"))
        case "interleaved message":
            try channel.writeInbound(frame(.text, "a", fin: false))
            try channel.writeInbound(frame(.binary, "b"))
        case "invalid utf-8": try channel.writeInbound(frame(.text, [0x61, 0xFF]))
        case "truncated utf-8 at the end": try channel.writeInbound(frame(.text, [0x61, 0xE2, 0x82]))
        case "too big": try channel.writeInbound(frame(.binary, Array(repeating: 0, count: 101)))
        case "too big in fragments":
            try channel.writeInbound(frame(.binary, Array(repeating: 0, count: 60), fin: false))
            try channel.writeInbound(frame(.continuation, Array(repeating: 0, count: 60)))
        case "close code 1005": try channel.writeInbound(frame(.connectionClose, [0x03, 0xED]))
        case "close reason not utf-8": try channel.writeInbound(frame(.connectionClose, [0x03, 0xE8, 0xFF]))
        case "close payload of one byte": try channel.writeInbound(frame(.connectionClose, [0x03]))
        default: Issue.record("unknown case \(name)")
        }
        let close = try #require(try written(channel))
        #expect(close.closeCode == expected.rawValue, "\(name)")
        #expect(try written(channel) == nil, "nothing after the close frame")
    }

    @Test func closeHandshakeEchoesTheCode() throws {
        let channel = try channel()
        try channel.writeInbound(frame(.connectionClose, [0x0F, 0xA0] + Array("bye".utf8)))
        let close = try #require(try written(channel))
        #expect(close.closeCode == 4000)
        #expect(!channel.isActive, "the server closes TCP after its close frame")
    }
}

@Suite("Shard fan-out and the outbound cap on a testing channel")
struct ShardTests {
    @Test("one shared frame buffer for every recipient, positions advance per batch, and 4008 for a socket stalled past the window")
    func deliverAndCap() async throws {
        // A shard runs on its loop as its executor: NIO's async testing loop can be one.
        let loop = NIOAsyncTestingEventLoop()
        let shard = Shard(eventLoop: loop, startOffsets: [0: 10, 1: 20], partitionCount: 2, metrics: GatewayMetrics())
        let fast = NIOAsyncTestingChannel(loop: loop)
        let slow = NIOAsyncTestingChannel(loop: loop)
        func connect(_ channel: NIOAsyncTestingChannel, id: UInt64) -> Connection {
            Connection(
                id: id, identity: Identity(userID: "alice", deviceID: nil, channels: [], expiresAt: .max), channel: channel, openedAt: 0,
                limits: .init(budgetBytes: 1 << 20, hardLimitBytes: 8 << 20, slowWindowMillis: 5_000), accounts: ConnectionAccounts(outbound: OutboundStats(), admission: nil)
            )
        }
        let first = connect(fast, id: 1)
        let second = connect(slow, id: 2)
        _ = await shard.register(second, channels: [])
        let positions = await shard.register(first, channels: [])
        let partition = Murmur2.partition(forKey: "alice", partitionCount: 2)
        #expect(positions.first { $0.stream == .user("alice") }?.offset == (partition == 0 ? 9 : 19), "current up to one before the next offset")

        let frame = ServerMessage.message(stream: "u", offset: 30, id: nil, payload: ByteBuffer(string: "{}"), contentType: nil)
        let delivery = Delivery(stream: .user("alice"), partition: partition, offset: 30, action: .frame(frame), exclude: nil, expiresAt: nil)
        slow.isWritable = false
        try await loop.submit { second.writabilityChanged(now: 0) }.get()
        await shard.deliver(DeliveryBatch(deliveries: [delivery, delivery], nextOffsets: [partition: 31], now: 0))
        #expect(try await slow.readOutbound(as: ByteBuffer.self) == nil, "behind a full socket the frames wait")
        await shard.sweep(now: 4_999, pingEverySeconds: 1_000, missedPongLimit: 2)
        #expect(try await slow.readOutbound(as: ByteBuffer.self) == nil, "within the slow-consumer window nothing is closed")
        await shard.sweep(now: 5_000, pingEverySeconds: 1_000, missedPongLimit: 2)

        let one = try #require(try await fast.readOutbound(as: ByteBuffer.self))
        let two = try #require(try await fast.readOutbound(as: ByteBuffer.self))
        #expect(one == frame && two == frame)
        one.withUnsafeReadableBytes { a in frame.withUnsafeReadableBytes { b in #expect(a.baseAddress == b.baseAddress, "the frame is shared, not copied") } }

        let close = try #require(WrittenFrame(try await slow.readOutbound(as: ByteBuffer.self)))
        #expect(close.closeCode == CloseCode.slowConsumer.rawValue)
        #expect(try await slow.readOutbound(as: ByteBuffer.self) == nil, "what waited is discarded: the client resumes from its cursor")
        #expect(await shard.position(of: .user("alice")) == 30)
        _ = try? await fast.finish()
        _ = try? await slow.finish()
        await loop.shutdownGracefully()
    }

    @Test("a batch's last delivery flushes each socket as it writes it, so a broadcast's first socket does not wait for the others; earlier frames of a batch share one flush per socket")
    func flushAsWritten() async throws {
        let loop = NIOAsyncTestingEventLoop()
        let shard = Shard(eventLoop: loop, startOffsets: [0: 0], partitionCount: 1, metrics: GatewayMetrics())
        let log = OutboundLog.Entries()
        var channels: [NIOAsyncTestingChannel] = []
        for (id, user) in [(UInt64(1), "alice"), (2, "bob"), (3, "carol")] {
            let channel = NIOAsyncTestingChannel(loop: loop)
            try await channel.pipeline.addHandler(OutboundLog(name: user, log: log))
            let connection = Connection(
                id: id, identity: Identity(userID: user, deviceID: nil, channels: [], expiresAt: .max), channel: channel, openedAt: 0,
                limits: .init(budgetBytes: 1 << 20, hardLimitBytes: 8 << 20, slowWindowMillis: 5_000), accounts: ConnectionAccounts(outbound: OutboundStats(), admission: nil)
            )
            _ = await shard.register(connection, channels: [])
            channels.append(channel)
        }
        let frame = ServerMessage.message(stream: "b", offset: 0, id: nil, payload: ByteBuffer(string: "{}"), contentType: nil)
        func delivery(_ stream: HeraldStream, _ offset: Int64) -> Delivery {
            Delivery(stream: stream, partition: 0, offset: offset, action: .frame(frame), exclude: nil, expiresAt: nil)
        }

        await shard.deliver(DeliveryBatch(deliveries: [delivery(.broadcast, 0)], nextOffsets: [0: 1], now: 0))
        let broadcast = log.entries.withLock { $0 }
        #expect(broadcast.count == 6)
        for pair in stride(from: 0, to: broadcast.count - 1, by: 2) {
            let user = broadcast[pair].dropFirst("write ".count)
            #expect(broadcast[pair].hasPrefix("write ") && broadcast[pair + 1] == "flush \(user)", "each socket is flushed right after its write: \(broadcast)")
        }

        log.entries.withLock { $0 = [] }
        await shard.deliver(DeliveryBatch(deliveries: [delivery(.user("alice"), 1), delivery(.user("alice"), 2), delivery(.user("bob"), 3)], nextOffsets: [0: 4], now: 0))
        let events = log.entries.withLock { $0 }
        #expect(events.filter { $0.hasSuffix(" alice") } == ["write alice", "write alice", "flush alice"], "\(events)")
        #expect(events.filter { $0.hasSuffix(" bob") } == ["write bob", "flush bob"], "\(events)")
        for channel in channels { _ = try? await channel.finish() }
        await loop.shutdownGracefully()
    }

    @Test("a connection whose token expired gets 4009 instead of the message")
    func nothingAfterExpiry() async throws {
        let loop = NIOAsyncTestingEventLoop()
        let shard = Shard(eventLoop: loop, startOffsets: [0: 0], partitionCount: 1, metrics: GatewayMetrics())
        let channel = NIOAsyncTestingChannel(loop: loop)
        let connection = Connection(
            id: 7, identity: Identity(userID: "frank", deviceID: nil, channels: [], expiresAt: 1_000), channel: channel, openedAt: 0,
            limits: .init(budgetBytes: 1 << 20, hardLimitBytes: 8 << 20, slowWindowMillis: 5_000), accounts: ConnectionAccounts(outbound: OutboundStats(), admission: nil)
        )
        _ = await shard.register(connection, channels: [])
        let frame = ServerMessage.message(stream: "u", offset: 0, id: nil, payload: ByteBuffer(string: "{}"), contentType: nil)
        let delivery = Delivery(stream: .user("frank"), partition: 0, offset: 0, action: .frame(frame), exclude: nil, expiresAt: nil)
        await shard.deliver(DeliveryBatch(deliveries: [delivery], nextOffsets: [0: 1], now: 1_000))
        let close = try #require(WrittenFrame(try await channel.readOutbound(as: ByteBuffer.self)))
        #expect(close.closeCode == CloseCode.tokenExpired.rawValue)
        #expect(try await channel.readOutbound(as: ByteBuffer.self) == nil, "the message was not written")
        _ = try? await channel.finish()
        await loop.shutdownGracefully()
    }
}

/// Records each write and flush that reaches a testing channel, in one log shared by several channels.
private final class OutboundLog: ChannelOutboundHandler, Sendable {
    typealias OutboundIn = ByteBuffer
    final class Entries: Sendable {
        let entries = Mutex<[String]>([])
    }
    let name: String
    let log: Entries
    init(name: String, log: Entries) {
        self.name = name
        self.log = log
    }
    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        log.entries.withLock { $0.append("write \(name)") }
        context.write(data, promise: promise)
    }
    func flush(context: ChannelHandlerContext) {
        log.entries.withLock { $0.append("flush \(name)") }
        context.flush()
    }
}
