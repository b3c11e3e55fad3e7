package import Foundation
package import NIOCore
import NIOPosix

/// The repository's root (where `ops/` and `docs/` are).
package func repositoryRoot() -> URL {
    var directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
        directory = directory.deletingLastPathComponent()
    }
    return directory
}

/// Runs a program to completion and returns its status and output.
package func run(_ executable: String, _ arguments: [String], in directory: URL? = nil) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = directory }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, output)
}

/// A TCP port nothing listens on right now.
package func freePort() throws -> Int {
    let group = MultiThreadedEventLoopGroup.singleton
    let channel = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
    let port = channel.localAddress?.port ?? 0
    try channel.close().wait()
    return port
}

/// Runs python with `arguments`, returns its exit status and output, and prints the output's last lines.
package func runPython(_ python: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let result = try run(python, arguments)
    print(result.output.split(separator: "\n").suffix(5).joined(separator: "\n"))
    return result
}

/// Sends one raw HTTP request and returns the whole response as text.
package func rawHTTP(port: Int, _ request: String) async throws -> String {
    let collector = ResponseCollector()
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) } }
        .connect(host: "127.0.0.1", port: port).get()
    try await channel.writeAndFlush(ByteBuffer(string: request))
    // Cancelling the caller (a test that gives up waiting) closes the socket, as a client that gives up would.
    try await withTaskCancellationHandler {
        try await channel.closeFuture.get()
    } onCancel: {
        channel.close(promise: nil)
    }
    return try await channel.eventLoop.submit { collector.text }.get()
}

/// Collects one HTTP response and closes the connection once it is complete (Content-Length or the
/// end of a chunked body), so that servers that keep connections alive (chromedriver) answer too.
/// @unchecked Sendable: touched only on its channel's loop (reads there, the final read via submit on that loop).
package final class ResponseCollector: ChannelInboundHandler, @unchecked Sendable {
    package typealias InboundIn = ByteBuffer
    private var bytes: [UInt8] = []
    package var text: String { String(decoding: bytes, as: UTF8.self) }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        bytes.append(contentsOf: unwrapInboundIn(data).readableBytesView)
        if isComplete { context.close(promise: nil) }
    }

    private var isComplete: Bool {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        guard let headerEnd = bytes.firstRange(of: separator)?.upperBound else { return false }
        let head = String(decoding: bytes[..<headerEnd], as: UTF8.self).lowercased()
        if let match = head.firstMatch(of: /content-length:\s*(\d+)/), let length = Int(match.1) {
            return bytes.count - headerEnd >= length
        }
        if head.contains("transfer-encoding: chunked") {
            return bytes.suffix(5).elementsEqual(Array("0\r\n\r\n".utf8))
        }
        return false
    }
}
