#pragma once
// rdkafka_mock.h relies on declarations from rdkafka.h: the order matters.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
