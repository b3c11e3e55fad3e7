import HeraldCore
import Testing

@Suite("Channel namespaces: the configuration and its decisions")
struct ChannelNamespaceTests {
    private let namespaces = try! ChannelNamespaces.parse(
        "video subscribe=anonymous publish history=50; members subscribe=token; team subscribe=pattern publish=true user=true; open subscribe=anonymous publish user=false"
    )

    @Test("the text form parses every setting, and an unconfigured namespace has the defaults (grant by name, no publish)")
    func parsing() throws {
        let video = namespaces.namespace(of: "video:123")
        #expect(video == ChannelNamespace(name: "video", subscribers: .anonymous, publish: true, historyLength: 50, publishNeedsUser: true))
        #expect(namespaces.namespace(of: "open:x").publishNeedsUser == false)
        #expect(namespaces.namespace(of: "payroll") == ChannelNamespace(name: ""))
        #expect(namespaces.namespace(of: "other:1") == ChannelNamespace(name: "other"))
        #expect(namespaces.allowsAnonymous)
        #expect(try !ChannelNamespaces.parse("members subscribe=token").allowsAnonymous)
        #expect(try ChannelNamespaces.parse(video.text).namespace(of: "video:1") == video, "text is what parse reads")
        #expect(try ChannelNamespaces.parse(" ; ").all.isEmpty)
    }

    @Test("a namespace that cannot be meant is refused with a message naming the problem")
    func refusals() {
        for (text, expected) in [
            ("video subscribe=everyone", "subscribe must be anonymous, token, grant or pattern"),
            ("video publish=yes", "publish must be true or false"),
            ("video history=10001", "history must be a number of messages from 0 to 10000"),
            ("video history=-1", "history must be"),
            ("video colour=red", #"unknown setting "colour""#),
            ("vid:eo", "a name may not contain"),
            ("video; video publish", "namespace video is configured twice"),
        ] {
            #expect(throws: ChannelNamespaceError.self, "\(text)") { try ChannelNamespaces.parse(text) }
            do {
                _ = try ChannelNamespaces.parse(text)
            } catch {
                #expect(error.message.contains(expected), "\(text): \(error.message)")
            }
        }
    }

    @Test("who may follow: anonymous namespaces anyone, token namespaces any token, the default an exact grant, pattern namespaces a grant or NAMESPACE:*")
    func following() {
        #expect(namespaces.mayFollow("video:1", grants: [], anonymous: true))
        #expect(namespaces.mayFollow("video:1", grants: [], anonymous: false))
        #expect(!namespaces.mayFollow("members:1", grants: [], anonymous: true))
        #expect(namespaces.mayFollow("members:1", grants: [], anonymous: false))
        #expect(!namespaces.mayFollow("payroll", grants: [], anonymous: false))
        #expect(namespaces.mayFollow("payroll", grants: ["payroll"], anonymous: false))
        #expect(!namespaces.mayFollow("payroll", grants: ["payroll"], anonymous: true), "an anonymous connection has no grants")
        #expect(namespaces.mayFollow("team:red", grants: ["team:*"], anonymous: false))
        #expect(namespaces.mayFollow("team:red", grants: ["team:red"], anonymous: false))
        #expect(!namespaces.mayFollow("team:red", grants: ["team:blue"], anonymous: false))
        #expect(!namespaces.mayFollow("other:1", grants: ["other:*"], anonymous: false), "a pattern grants only where the namespace says pattern")
        #expect(!namespaces.mayFollow("payroll", grants: ["*"], anonymous: false))
    }

    @Test("who may publish: only where the namespace allows it, only a connection that may follow, and anonymous ones only where no user is needed")
    func publishing() {
        #expect(namespaces.publishRefusal("video:1", grants: [], anonymous: false) == nil)
        #expect(namespaces.publishRefusal("video:1", grants: [], anonymous: true)?.contains("needs a user") == true)
        #expect(namespaces.publishRefusal("open:1", grants: [], anonymous: true) == nil)
        #expect(namespaces.publishRefusal("members:1", grants: [], anonymous: false)?.contains("does not allow it") == true)
        #expect(namespaces.publishRefusal("team:red", grants: [], anonymous: false)?.contains("does not grant") == true)
        #expect(namespaces.publishRefusal("team:red", grants: ["team:*"], anonymous: false) == nil)
        #expect(namespaces.publishRefusal("payroll", grants: ["payroll"], anonymous: false) != nil)
    }
}
