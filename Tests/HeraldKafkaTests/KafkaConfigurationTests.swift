import HeraldKafka
import Testing

@Suite("Kafka properties from the command line (--kafka-properties, HERALD_KAFKA_PROPERTIES)")
struct KafkaConfigurationTests {
    @Test("key=value pairs are trimmed, blank items skipped, and a value may hold '='")
    func parsesPairs() throws {
        let properties = try KafkaConfiguration.properties(
            parsing: " security.protocol = SSL ,, sasl.jaas.config=a=b , "
        )
        #expect(properties == ["security.protocol": "SSL", "sasl.jaas.config": "a=b"])
        #expect(try KafkaConfiguration.properties(parsing: "").isEmpty)
    }

    @Test("an item without a key or without '=' is refused with a message that names its position, not its text (it may be the tail of a password)")
    func refusesMalformedItems() {
        for (text, position) in [("linger.ms", "1 of 1"), ("=5", "1 of 1"), ("acks=all,oops", "2 of 2")] {
            #expect {
                try KafkaConfiguration.properties(parsing: text)
            } throws: { error in
                let error = error as? KafkaError
                return error?.code == .configuration && error?.message.contains("property \(position) is not key=value") == true
                    && error?.message.contains(text.split(separator: ",").last!) == false
            }
        }
    }
}
