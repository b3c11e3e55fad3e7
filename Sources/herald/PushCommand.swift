import ArgumentParser
import Foundation

/// Pushes one message through a node's HTTP API, as a business service would.
struct PushCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "push",
        abstract: "Push a message through the HTTP API (POST /v1/push) and print the answer."
    )

    @Option(help: "A user to push to (repeatable).") var user: [String] = []
    @Option(help: "A channel to push to (repeatable).") var channel: [String] = []
    @Flag(help: "Push to every connection.") var all = false
    @Option(help: "How the payload is sent: json (default), text or base64.") var encoding = "json"
    @Option(help: "Idempotency id.") var id: String?
    @Option(help: "The API's base URL. Env: HERALD_API_URL. Default: http://127.0.0.1:8081.") var api: String?
    @Option(help: "API key. Env: HERALD_API_KEY, else the first of HERALD_API_KEYS.") var apiKey: String?
    @Option(help: "A file holding the API key. Env: HERALD_API_KEY_FILE.") var apiKeyFile: String?
    @Option(help: "For an https API: a PEM file of the CAs to trust instead of the system's. Env: HERALD_API_CA_FILE.") var apiCAFile: String?
    @Option(help: "For an API that requires a client certificate: its PEM file. Env: HERALD_API_CLIENT_CERT_FILE.") var apiClientCertFile: String?
    @Option(help: "The client certificate's key (PEM). Env: HERALD_API_CLIENT_KEY_FILE.") var apiClientKeyFile: String?
    @Argument(help: "The payload: JSON (default), or text/base64 with --encoding.") var payload: String

    func validate() throws {
        let targets = (user.isEmpty ? 0 : 1) + (channel.isEmpty ? 0 : 1) + (all ? 1 : 0)
        guard targets == 1 else { throw ValidationError("give exactly one of --user, --channel, --all") }
        guard ["json", "text", "base64"].contains(encoding) else { throw ValidationError("--encoding is json, text or base64") }
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let key = try Settings(environment: environment).secret(apiKey, file: apiKeyFile, "HERALD_API_KEY")
            ?? environment["HERALD_API_KEYS"]?.split(separator: ",").first.map(String.init) else {
            throw ValidationError("--api-key, --api-key-file, HERALD_API_KEY or HERALD_API_KEY_FILE is required")
        }
        let base = api ?? environment["HERALD_API_URL"] ?? "http://127.0.0.1:8081"
        guard let url = URL(string: base + "/v1/push") else { throw ValidationError("\(base) is not a URL") }

        let to: Any = !user.isEmpty ? ["users": user] : !channel.isEmpty ? ["channels": channel] : ["all": true]
        var body: [String: Any] = ["to": to]
        if encoding == "json" {
            guard let data = try? JSONSerialization.jsonObject(with: Data(payload.utf8), options: [.fragmentsAllowed]) else {
                throw ValidationError("the payload is not JSON; use --encoding text to send it as text")
            }
            body["data"] = data
        } else {
            body["data"] = payload
            body["encoding"] = encoding
        }
        if let id { body["id"] = id }

        let certificate = apiClientCertFile ?? environment["HERALD_API_CLIENT_CERT_FILE"]
        let certificateKey = apiClientKeyFile ?? environment["HERALD_API_CLIENT_KEY_FILE"]
        guard (certificate == nil) == (certificateKey == nil) else {
            throw ValidationError("--api-client-cert-file and --api-client-key-file go together")
        }
        var request = APIRequest(
            url: url, headers: [("Authorization", "Bearer \(key)"), ("Content-Type", "application/json")],
            body: Array(try JSONSerialization.data(withJSONObject: body, options: [.fragmentsAllowed])),
            trustedCAFile: apiCAFile ?? environment["HERALD_API_CA_FILE"]
        )
        if let certificate, let certificateKey { request.clientCertificate = (certificate, certificateKey) }
        let answer: APIRequest.Answer
        do {
            answer = try await request.send()
        } catch {
            throw ValidationError("the push did not reach \(base): \(error)")
        }
        print(String(decoding: answer.body, as: UTF8.self))
        guard answer.status == 202 else { throw ExitCode(1) }
    }
}
