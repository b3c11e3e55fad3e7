import Foundation

/// When a client should refresh its token: read from the token's own `exp` claim (unverified: the
/// client only schedules by it; the node verifies), like `tokenIdentity` in the JS client.
enum TokenExpiry {
    /// The token's `exp` as a Date, or nil for a token that does not carry a readable one.
    static func of(_ token: String) -> Date? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { return nil }
        var base64 = parts[1].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64.append("=") }
        guard let data = Data(base64Encoded: base64),
              let claims = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let exp = (claims["exp"] as? NSNumber)?.doubleValue, exp.isFinite, exp > 0, exp < 253_402_300_800
        else { return nil }
        return Date(timeIntervalSince1970: exp)
    }

    /// How long before `exp` to refresh: half the time left, at least 1 s and at most 60 s, so a short
    /// token refreshes with time to spare for a slow token function or node, and a long one does not
    /// refresh early for nothing.
    static func lead(remaining: TimeInterval) -> TimeInterval {
        min(60, max(1, remaining / 2))
    }
}
