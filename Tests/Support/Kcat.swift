import Foundation

/// A test's own failure, with a message that says what did not happen.
public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Runs kcat (Debian's `kcat` package; `scripts/install-deps --test` installs it) and fails the test if it fails.
public func runKcat(_ arguments: [String], stdin: String) throws {
    let kcat = try requiredTool("kcat", "kafkacat", paths: ["/usr/bin/kcat", "/usr/local/bin/kcat"], package: "Debian's kcat")
    let process = Process()
    process.executableURL = URL(fileURLWithPath: kcat)
    process.arguments = arguments
    let input = Pipe()
    let errors = Pipe()
    process.standardInput = input
    process.standardError = errors
    try process.run()
    input.fileHandleForWriting.write(Data(stdin.utf8))
    try input.fileHandleForWriting.close()
    process.waitUntilExit()
    let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    guard process.terminationStatus == 0 else {
        throw TestFailure("kcat exited \(process.terminationStatus): \(stderr)")
    }
}
