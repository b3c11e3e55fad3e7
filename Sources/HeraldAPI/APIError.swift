public import Hummingbird
import NIOCore

/// Every refusal of the HTTP API, as the spec's status and a body that names the problem:
/// `{"error":{"code":"…","message":"…"}}` (docs/protocol.md §3). Statuses are chosen here and nowhere else.
public struct APIError: HTTPResponseError, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        let status: HTTPResponse.Status
        public var description: String { name }

        public static let invalidBody = Code(name: "invalid-body", status: .badRequest)
        public static let invalidField = Code(name: "invalid-field", status: .badRequest)
        public static let unauthorized = Code(name: "unauthorized", status: .unauthorized)
        public static let notFound = Code(name: "not-found", status: .notFound)
        public static let methodNotAllowed = Code(name: "method-not-allowed", status: .methodNotAllowed)
        public static let payloadTooLarge = Code(name: "payload-too-large", status: .contentTooLarge)
        public static let kafkaUnavailable = Code(name: "kafka-unavailable", status: .serviceUnavailable)
        public static let notReady = Code(name: "not-ready", status: .serviceUnavailable)
        public static let deliveryBehind = Code(name: "delivery-behind", status: .serviceUnavailable)
        /// As many history reads as the node allows are under way (retry after Retry-After).
        public static let busy = Code(name: "busy", status: .serviceUnavailable)
        /// An idempotency id used before, with this API key, for a different push.
        public static let idConflict = Code(name: "id-conflict", status: .conflict)
        /// An idempotency id whose first push is still waiting for Kafka (retry after Retry-After).
        public static let idInFlight = Code(name: "id-in-flight", status: .conflict)
        /// Over the API key's records per second (Retry-After says when the request would fit).
        public static let rateLimited = Code(name: "rate-limited", status: .tooManyRequests)
        /// More records in one request (targets × pushes) than the per-request cap.
        public static let tooManyRecords = Code(name: "too-many-records", status: .contentTooLarge)
    }

    public let code: Code
    public let message: String
    public let retryAfter: Int?
    /// For 405: the methods the path serves.
    public let allow: [String]

    public init(_ code: Code, _ message: String, retryAfter: Int? = nil, allow: [String] = []) {
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
        self.allow = allow
    }

    public var status: HTTPResponse.Status { code.status }
    public var description: String { "\(status.code) \(code): \(message)" }

    /// A field that is missing or wrong, named as a JSON path (`to.users`, `messages[3].data`).
    static func field(_ path: String, _ problem: String) -> APIError {
        APIError(.invalidField, "\(path): \(problem)")
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = Responses.body(Responses.Failure(error: .init(code: code.name, message: message)))
        var headers: HTTPFields = [.contentType: "application/json"]
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        if code == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        if !allow.isEmpty { headers[.allow] = allow.joined(separator: ", ") }
        return Response(status: status, headers: headers, body: .init(byteBuffer: body))
    }
}
