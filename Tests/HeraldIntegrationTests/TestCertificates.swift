import Foundation

/// A private CA and the certificates it signs, made by openssl in a temporary folder for one test:
/// server certificates for 127.0.0.1 and localhost, and client certificates for mutual TLS.
struct TestCertificates {
    let folder: URL
    let openssl: String

    var caFile: String { folder.appendingPathComponent("ca.pem").path }

    static func make() throws -> TestCertificates {
        let openssl = try requiredTool("openssl", package: "Debian's openssl")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("herald-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let made = TestCertificates(folder: folder, openssl: openssl)
        try made.run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                      "-keyout", made.path("ca.key"), "-out", made.path("ca.pem"), "-days", "2", "-subj", "/CN=Herald Test CA",
                      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        return made
    }

    func path(_ name: String) -> String { folder.appendingPathComponent(name).path }

    /// Issues `name.pem` and `name.key`, signed by the CA, and returns their paths. `serial` tells
    /// one certificate from another in a test.
    @discardableResult
    func issue(_ name: String, commonName: String, serial: Int, client: Bool = false) throws -> (certificate: String, key: String) {
        let extensions = client
            ? "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
            : "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
        try extensions.write(toFile: path("\(name).ext"), atomically: true, encoding: .utf8)
        try run(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", path("\(name).key"), "-out", path("\(name).csr"), "-subj", "/CN=\(commonName)"])
        try run(["x509", "-req", "-in", path("\(name).csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"),
                 "-set_serial", String(serial), "-days", "2", "-out", path("\(name).pem"), "-extfile", path("\(name).ext")])
        return (path("\(name).pem"), path("\(name).key"))
    }

    /// Chromium's `--ignore-certificate-errors-spki-list` value for a certificate: the base64 SHA-256
    /// of its public key.
    func spkiHash(_ certificate: String) throws -> String {
        let key = try run(["x509", "-in", certificate, "-noout", "-pubkey"])
        try key.write(toFile: path("spki.pub"), atomically: true, encoding: .utf8)
        let der = folder.appendingPathComponent("spki.der")
        try run(["pkey", "-pubin", "-in", path("spki.pub"), "-outform", "DER", "-out", der.path])
        try run(["dgst", "-sha256", "-binary", "-out", path("spki.sha256"), der.path])
        return try Data(contentsOf: folder.appendingPathComponent("spki.sha256")).base64EncodedString()
    }

    /// Puts `source`'s files in place of `target`'s by renames, as a Secret volume's update does:
    /// each reader sees a whole old file or a whole new one.
    func replace(_ target: (certificate: String, key: String), with source: (certificate: String, key: String)) throws {
        for (from, to) in [(source.key, target.key), (source.certificate, target.certificate)] {
            let staged = to + ".new"
            try? FileManager.default.removeItem(atPath: staged)
            try FileManager.default.copyItem(atPath: from, toPath: staged)
            guard rename(staged, to) == 0 else { throw TestFailure("cannot rename \(staged) to \(to)") }
        }
    }

    @discardableResult
    func run(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: openssl)
        process.arguments = arguments
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let messages = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw TestFailure("openssl \(arguments.joined(separator: " ")) failed: \(String(decoding: messages, as: UTF8.self))")
        }
        return String(decoding: data, as: UTF8.self)
    }

    func remove() { try? FileManager.default.removeItem(at: folder) }
}
