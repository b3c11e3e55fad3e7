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

    @Test("an item without a key or without '=' is refused with a message that quotes it")
    func refusesMalformedItems() {
        for text in ["linger.ms", "=5", "acks=all,oops"] {
            #expect {
                try KafkaConfiguration.properties(parsing: text)
            } throws: { error in
                let error = error as? KafkaError
                return error?.code == .configuration && error?.message.contains("is not key=value") == true
            }
        }
    }
}
