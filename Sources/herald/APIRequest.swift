import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One HTTP/1.1 request to a node's API and its whole answer, over NIO (with TLS for `https`), so
/// the binary needs no FoundationNetworking and with it no libcurl.
struct APIRequest {
    var url: URL
    var method: HTTPMethod = .POST
    var headers: [(String, String)] = []
    var body: [UInt8] = []
    /// A PEM file of CAs to trust for `https` instead of the system's.
    var trustedCAFile: String?
    /// A client certificate and its key (PEM files), for an internal port that requires one.
    var clientCertificate: (certificate: String, key: String)?

    struct Answer {
        var status: Int
        var body: [UInt8]
    }

    func send(timeout: TimeAmount = .seconds(30)) async throws -> Answer {
        guard let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https", let host = url.host, !host.isEmpty else {
            throw APIRequestError("\(url.absoluteString) is not an http:// or https:// URL")
        }
        let port = url.port ?? (scheme == "https" ? 443 : 80)
        guard (1...65_535).contains(port) else { throw APIRequestError("port \(port) is out of range") }
        let tls = scheme == "https" ? try tlsContext() : nil
        let collector = AnswerCollector()
        let serverName = host.first?.isNumber == true || host.contains(":") ? nil : host
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: serverName))
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: host, port: port).get()
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: url.path.isEmpty ? "/" : url.path + (url.query.map { "?" + $0 } ?? ""))
        head.headers.add(name: "Host", value: url.port.map { "\(host):\($0)" } ?? host)
        head.headers.add(name: "Content-Length", value: String(body.count))
        head.headers.add(name: "Connection", value: "close")
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil)
        try await channel.writeAndFlush(HTTPClientRequestPart.end(nil)).get()
        let deadline = channel.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
        try? await channel.closeFuture.get()
        deadline.cancel()
        guard let answer = try await channel.eventLoop.submit({ collector.answer }).get() else {
            throw APIRequestError("\(url.absoluteString) closed the connection without a complete answer")
        }
        return answer
    }
}

extension APIRequest {
    fileprivate func tlsContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        if let trustedCAFile { configuration.trustRoots = .file(trustedCAFile) }
        if let clientCertificate {
            configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(clientCertificate.certificate).map { .certificate($0) }
            configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: clientCertificate.key, format: .pem))
        }
        return try NIOSSLContext(configuration: configuration)
    }
}

struct APIRequestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Collects one response and closes the connection when it is complete.
/// @unchecked Sendable: touched only on its channel's loop (the last read via `submit` on that loop).
private final class AnswerCollector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart

    private var status: Int?
    private var body: [UInt8] = []
    private(set) var answer: APIRequest.Answer?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): status = Int(head.status.code)
        case .body(let part): body.append(contentsOf: part.readableBytesView)
        case .end:
            if let status { answer = .init(status: status, body: body) }
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
