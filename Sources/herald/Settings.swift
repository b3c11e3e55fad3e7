import ArgumentParser
import Foundation

/// One setting's value: the command-line flag if given, else the `HERALD_*` environment variable,
/// else the configuration file's key of the same name (merged into `environment` underneath the real
/// variables, `ConfigurationFile`), else nothing (the caller's default applies).
struct Settings {
    let environment: [String: String]

    func string(_ flag: String?, _ variable: String) -> String? {
        if let flag, !flag.isEmpty { return flag }
        if let value = environment[variable], !value.isEmpty { return value }
        return nil
    }

    /// A duration: seconds as a number, or 90s, 30m, 12h, 7d.
    func duration(_ flag: String?, _ variable: String) throws -> Duration? {
        guard let text = string(flag, variable) else { return nil }
        if let seconds = Double(text), seconds.isFinite, seconds > 0, seconds < 1e9 { return .milliseconds(Int64(seconds * 1_000)) }
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3_600, "d": 86_400]
        guard let unit = text.last, let multiplier = units[unit], let value = Double(text.dropLast()), value.isFinite, value > 0,
              value * multiplier < 1e9 else {
            throw ValidationError("\(variable)=\(text) is not a duration like 90, 90s, 30m, 12h or 7d")
        }
        return .milliseconds(Int64(value * multiplier * 1_000))
    }

    /// A flag, else a true/false variable.
    func flag(_ flag: Bool, _ variable: String) -> Bool {
        if flag { return true }
        guard let text = environment[variable]?.lowercased() else { return false }
        return ["true", "1", "yes", "on"].contains(text)
    }

    func number<T: LosslessStringConvertible>(_ flag: T?, _ variable: String) throws -> T? {
        if let flag { return flag }
        guard let text = environment[variable], !text.isEmpty else { return nil }
        guard let parsed = T(text) else { throw ValidationError("\(variable)=\(text) is not a number") }
        return parsed
    }

    /// A secret given as itself (`--jwt-secret`, `HERALD_JWT_SECRET`) or as a file that holds it
    /// (`--jwt-secret-file`, `HERALD_JWT_SECRET_FILE`: a mounted Secret); the value wins over the file.
    /// The file's last line break is not part of the secret (editors and `echo` add one).
    func secret(_ flag: String?, file fileFlag: String?, _ variable: String) throws -> String? {
        if let value = string(flag, variable) { return value }
        guard let path = string(fileFlag, variable + "_FILE") else { return nil }
        guard let data = FileManager.default.contents(atPath: path), data.count <= 64 * 1024 else {
            throw ValidationError("cannot read \(variable)_FILE \(path) (a file of at most 64 KiB)")
        }
        var text = String(decoding: data, as: UTF8.self)
        while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
        guard !text.isEmpty else { throw ValidationError("\(variable)_FILE \(path) is empty") }
        return text
    }

    /// The process environment over the configuration file (`--config` or `HERALD_CONFIG`), if any.
    /// An empty variable counts as unset, so it does not hide the file's value.
    static func environment(configFlag: String?, process: [String: String]) throws -> (environment: [String: String], file: ConfigurationFile?) {
        let given = process.filter { !$0.value.isEmpty }
        guard let path = configFlag.flatMap({ $0.isEmpty ? nil : $0 }) ?? given["HERALD_CONFIG"] else { return (process, nil) }
        let file = try ConfigurationFile.load(path)
        return (file.settings.merging(given) { _, variable in variable }, file)
    }
}
