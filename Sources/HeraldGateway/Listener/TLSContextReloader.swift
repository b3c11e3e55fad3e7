import Foundation
public import Logging
import Metrics
public import NIOSSL
import Synchronization

/// A server's certificate and key files (PEM), and optionally the CAs whose client certificates it
/// requires.
public struct TLSFiles: Sendable, Equatable {
    public var certificateFile: String
    public var keyFile: String
    /// With it, a client must present a certificate signed by one of these CAs (mutual TLS).
    public var clientCAFile: String?

    public init(certificateFile: String, keyFile: String, clientCAFile: String? = nil) {
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.clientCAFile = clientCAFile
    }
}

/// What a listener needs to serve TLS whose certificate can be replaced on disk while it runs
/// (cert-manager renews a mounted Secret in place): every new handshake asks it for the chain and key
/// (NIOSSL's context callback), and it looks at the files' identity (inode, size, mtime) at most every
/// `checkInterval`, and a background task looks as often when no handshake comes. Open connections
/// keep the session they negotiated. A replacement that does not
/// load (unreadable, not PEM, a key that does not match the certificate, or a pair caught half
/// written) keeps the previous pair, is logged as an error and counted in
/// `herald_tls_reload_failures_total`; it is tried again once the files change again.
public final class TLSContextReloader: Sendable {
    public let files: TLSFiles
    private let checkInterval: Duration
    private let logger: Logger
    private let reloads: Counter
    private let failures: Counter
    private let state: Mutex<State>

    private struct State {
        var checkedAt: ContinuousClock.Instant
        var stamp: [FileStamp]
        var chain: [NIOSSLCertificate]
        var key: NIOSSLPrivateKey
    }

    /// The parts of a file's identity that change when it is rewritten or replaced by a rename or a
    /// symlink swap (a Kubernetes Secret volume swaps its `..data` link).
    struct FileStamp: Equatable {
        var device: UInt64
        var inode: UInt64
        var size: Int64
        var modifiedSeconds: Int
        var modifiedNanoseconds: Int

        init?(path: String) {
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            device = UInt64(info.st_dev)
            inode = UInt64(info.st_ino)
            size = Int64(info.st_size)
            #if canImport(Darwin)
            modifiedSeconds = Int(info.st_mtimespec.tv_sec)
            modifiedNanoseconds = Int(info.st_mtimespec.tv_nsec)
            #else
            modifiedSeconds = Int(info.st_mtim.tv_sec)
            modifiedNanoseconds = Int(info.st_mtim.tv_nsec)
            #endif
        }
    }

    /// Loads the pair once, so that a node with a bad certificate does not start. `port` names the
    /// listener in logs and metrics (`public`, `api`).
    public init(files: TLSFiles, port: String, checkInterval: Duration = .seconds(2), logger: Logger? = nil) throws(TLSFileError) {
        self.files = files
        self.checkInterval = checkInterval
        var logger = logger ?? Logger(label: "herald.tls")
        logger[metadataKey: "tls.port"] = "\(port)"
        self.logger = logger
        reloads = Counter(label: "herald_tls_reloads_total", dimensions: [("port", port)])
        failures = Counter(label: "herald_tls_reload_failures_total", dimensions: [("port", port)])
        let stamp = Self.stamp(files)
        let (chain, key) = try Self.load(files)
        if let path = files.clientCAFile {
            do {
                _ = try NIOSSLCertificate.fromPEMFile(path)
            } catch {
                throw TLSFileError("cannot read the client CA file \(path) as PEM certificates: \(error)")
            }
        }
        state = Mutex(State(checkedAt: .now, stamp: stamp, chain: chain, key: key))
        // Handshakes look at the files too, but a node without new connections would otherwise not
        // notice (nor report) a bad replacement until the next one. The task ends with the reloader.
        let interval = checkInterval
        Task { [weak self] in
            while true {
                try? await Task.sleep(for: interval)
                guard let self else { return }
                _ = self.current()
            }
        }
    }

    /// The server configuration to build a context from once: the pair loaded now, the client CAs,
    /// and the callback through which each handshake takes the current pair.
    public func serverConfiguration() -> TLSConfiguration {
        let (chain, key) = state.withLock { ($0.chain, $0.key) }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key)
        )
        if let path = files.clientCAFile {
            configuration.trustRoots = .file(path)
            configuration.certificateVerification = .noHostnameVerification
        }
        configuration.sslContextCallback = { [self] _, promise in
            var override = NIOSSLContextConfigurationOverride()
            let (chain, key) = current()
            override.certificateChain = chain.map { .certificate($0) }
            override.privateKey = .privateKey(key)
            promise.succeed(override)
        }
        return configuration
    }

    /// A context for a listener to give each connection's `NIOSSLServerHandler`.
    public func makeContext() throws -> NIOSSLContext {
        try NIOSSLContext(configuration: serverConfiguration())
    }

    /// The pair to hand to a new handshake: the files are looked at (a `stat` each) at most every
    /// `checkInterval`, and read only when they changed.
    func current() -> ([NIOSSLCertificate], NIOSSLPrivateKey) {
        let now = ContinuousClock.now
        let due: Bool = state.withLock { state in
            guard now - state.checkedAt >= checkInterval else { return false }
            state.checkedAt = now
            return true
        }
        if due { reloadIfChanged() }
        return state.withLock { ($0.chain, $0.key) }
    }

    /// Looks at the files now and loads them if they changed; true when a new pair is in use.
    @discardableResult
    public func reloadIfChanged() -> Bool {
        let stamp = Self.stamp(files)
        // Taken as seen before loading: one caller loads a change, and a bad replacement is reported
        // once, not at every handshake.
        let changed = state.withLock { state in
            defer { state.stamp = stamp }
            return state.stamp != stamp
        }
        guard changed else { return false }
        do {
            let (chain, key) = try Self.load(files)
            state.withLock { state in
                state.chain = chain
                state.key = key
            }
            reloads.increment()
            logger.info("TLS certificate reloaded", metadata: ["tls.certificate": "\(files.certificateFile)"])
            return true
        } catch {
            failures.increment()
            logger.error("TLS certificate not reloaded; the previous one stays in use", metadata: ["error": "\(error.message)"])
            return false
        }
    }

    private static func stamp(_ files: TLSFiles) -> [FileStamp] {
        [files.certificateFile, files.keyFile].map { FileStamp(path: $0) ?? FileStamp.missing }
    }

    /// Reads and checks a pair: a context is built from it, which fails when the key is not the
    /// certificate's.
    static func load(_ files: TLSFiles) throws(TLSFileError) -> ([NIOSSLCertificate], NIOSSLPrivateKey) {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(files.certificateFile)
        } catch {
            throw TLSFileError("cannot read the certificate file \(files.certificateFile) as PEM certificates: \(error)")
        }
        guard !chain.isEmpty else { throw TLSFileError("the certificate file \(files.certificateFile) holds no certificate") }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: files.keyFile, format: .pem)
        } catch {
            throw TLSFileError("cannot read the key file \(files.keyFile) as a PEM private key: \(error)")
        }
        do {
            _ = try NIOSSLContext(configuration: .makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key)))
        } catch {
            throw TLSFileError("the key in \(files.keyFile) does not match the certificate in \(files.certificateFile): \(error)")
        }
        return (chain, key)
    }
}

extension TLSContextReloader.FileStamp {
    static let missing = Self(device: 0, inode: 0, size: -1, modifiedSeconds: 0, modifiedNanoseconds: 0)

    init(device: UInt64, inode: UInt64, size: Int64, modifiedSeconds: Int, modifiedNanoseconds: Int) {
        self.device = device
        self.inode = inode
        self.size = size
        self.modifiedSeconds = modifiedSeconds
        self.modifiedNanoseconds = modifiedNanoseconds
    }
}

/// A certificate, key or CA file that cannot be used, and why.
public struct TLSFileError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
