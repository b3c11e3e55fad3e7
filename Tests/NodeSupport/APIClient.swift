import Foundation
import NIOCore
import NIOPosix

/// One HTTP/1.1 exchange with the control plane over loopback (`Connection: close`).
package struct APIResponse {
    package var status: Int
    package var headers: [String: String]
    package var body: String
    package var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:] }
    package var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
    package var errorMessage: String? { (json["error"] as? [String: Any])?["message"] as? String }
}

package func api(
    _ port: Int, _ method: String, _ path: String, body: String? = nil, key: String? = testAPIKey, headers extra: [(String, String)] = []
) async throws -> APIResponse {
    var request = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    if let key { request += "Authorization: Bearer \(key)\r\n" }
    for (name, value) in extra { request += "\(name): \(value)\r\n" }
    if let body {
        request += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n"
    }
    request += "\r\n" + (body ?? "")
    let raw = try await rawHTTP(port: port, request)
    guard let split = raw.range(of: "\r\n\r\n") else { throw TestFailure("no HTTP response: \(raw)") }
    let head = raw[..<split.lowerBound].split(separator: "\r\n")
    let status = Int(head.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
    var headers: [String: String] = [:]
    for line in head.dropFirst() {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    var body = String(raw[split.upperBound...])
    if headers["transfer-encoding"] == "chunked" { body = dechunk(body) }
    return APIResponse(status: status, headers: headers, body: body)
}

private func dechunk(_ text: String) -> String {
    var rest = Substring(text)
    var out = ""
    while let lineEnd = rest.range(of: "\r\n"), let size = Int(rest[..<lineEnd.lowerBound], radix: 16), size > 0 {
        let start = lineEnd.upperBound
        let bytes = Array(rest[start...].utf8)
        out += String(decoding: bytes.prefix(size), as: UTF8.self)
        rest = Substring(String(decoding: bytes.dropFirst(size + 2), as: UTF8.self))
    }
    return out
}

extension APIResponse {
    /// `results` of a single push: (stream, key, partition, offset).
    package var results: [(stream: String, key: String, partition: Int32, offset: Int64)] {
        (json["results"] as? [[String: Any]] ?? []).map {
            ($0["stream"] as? String ?? "", $0["key"] as? String ?? "",
             Int32(($0["partition"] as? NSNumber)?.intValue ?? -1), ($0["offset"] as? NSNumber)?.int64Value ?? -1)
        }
    }
}

/// `api(…)`, or nil if no answer came within `limit` (the exchange is abandoned: its socket closes).
package func api(within limit: Duration, _ port: Int, _ method: String, _ path: String, body: String? = nil, key: String? = testAPIKey) async throws -> APIResponse? {
    try await withThrowingTaskGroup(of: APIResponse?.self) { group in
        group.addTask { try await api(port, method, path, body: body, key: key) }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        let first = try await group.next() ?? nil
        group.cancelAll()
        return first
    }
}
