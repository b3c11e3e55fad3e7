import ArgumentParser

/// One setting's value: the command-line flag if given, else the `HERALD_*` environment variable,
/// else nothing (the caller's default applies).
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
}
