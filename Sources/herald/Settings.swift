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

    func number<T: LosslessStringConvertible>(_ flag: T?, _ variable: String) throws -> T? {
        if let flag { return flag }
        guard let text = environment[variable], !text.isEmpty else { return nil }
        guard let parsed = T(text) else { throw ValidationError("\(variable)=\(text) is not a number") }
        return parsed
    }
}
