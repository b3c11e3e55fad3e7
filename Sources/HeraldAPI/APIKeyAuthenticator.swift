public import Hummingbird

/// Requires `Authorization: Bearer <api key>` on every route it guards. Keys are compared in constant
/// time, so response timing reveals nothing about how much of a guess was right.
public struct APIKeyAuthenticator<Context: RequestContext>: RouterMiddleware {
    private let keys: [[UInt8]]

    public init(keys: [String]) {
        precondition(!keys.isEmpty, "at least one API key")
        self.keys = keys.map { Array($0.utf8) }
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization] else {
            throw APIError(.unauthorized, "Authorization: Bearer <api key> is required")
        }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw APIError(.unauthorized, "the Authorization header must be Bearer <api key>")
        }
        let presented = Array(parts[1].utf8)
        var matched = false
        for key in keys where Self.constantTimeEqual(key, presented) { matched = true }
        guard matched else { throw APIError(.unauthorized, "the API key is not valid") }
        return try await next(request, context)
    }

    /// Which configured key a request that passed this middleware presented (its index), so that
    /// idempotency ids and rate budgets belong to one key. Not constant time, and it need not be: the
    /// key was already accepted.
    public static func keyIndex(of request: Request, in keys: [String]) -> Int {
        guard let header = request.headers[.authorization] else { return -1 }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2 else { return -1 }
        return keys.firstIndex(of: String(parts[1])) ?? -1
    }

    /// Compares every byte of the longer input whatever the contents, so time depends on length only.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference: UInt8 = a.count == b.count ? 0 : 1
        for index in 0..<max(a.count, b.count) {
            let x = index < a.count ? a[index] : 0
            let y = index < b.count ? b[index] : 0
            difference |= x ^ y
        }
        return difference == 0
    }
}
