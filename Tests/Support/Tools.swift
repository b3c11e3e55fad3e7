import Foundation

/// The first executable called `name` on PATH.
public func which(_ name: String) -> String? {
    for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
        let path = "\(directory)/\(name)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return nil
}

/// An outside program a test drives, found on PATH under any of `names` (or at one of `paths`), or a
/// failure that names the program and how to get it, instead of a test that fails further on for no
/// visible reason. `package` is what provides it (a Debian package, or PyPI's).
public func requiredTool(_ names: String..., paths: [String] = [], package: String) throws -> String {
    for name in names {
        if let path = which(name) { return path }
    }
    if let path = paths.first(where: FileManager.default.isExecutableFile(atPath:)) { return path }
    throw TestFailure(
        "\(names.joined(separator: " or ")) is not installed: run scripts/install-deps --test (it installs \(package))"
    )
}

/// python3, which scripts/install-deps takes as given (Debian ships it) before it adds the PyPI modules.
public func requiredPython(for purpose: String) throws -> String {
    guard let python = which("python3") else {
        throw TestFailure("python3 is not installed (needed for \(purpose)): apt-get install -y python3")
    }
    return python
}

/// A python3 that can import `module` (kosoku, schemathesis), or a failure that names what is missing.
/// `package`: its PyPI name, when that differs from the module's.
public func pythonWith(module: String, package: String? = nil) throws -> String {
    let python = try requiredPython(for: package ?? module)
    let probe = Process()
    probe.executableURL = URL(fileURLWithPath: python)
    probe.arguments = ["-c", "import \(module)"]
    probe.standardOutput = FileHandle.nullDevice
    probe.standardError = FileHandle.nullDevice
    try probe.run()
    probe.waitUntilExit()
    guard probe.terminationStatus == 0 else {
        throw TestFailure(
            "\(package ?? module) is not installed for \(python): run scripts/install-deps --test (it installs it from PyPI)"
        )
    }
    return python
}
