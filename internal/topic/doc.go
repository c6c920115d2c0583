// Package topic provides RabbitMQ topic-exchange patterns: Validate checks a
// binding pattern a client sent, Compile turns it into a Pattern, and
// Pattern.Match decides whether a routing key, split once into a Key, would
// be routed by a topic exchange to a queue bound with that pattern.
// Pattern.Covers tells quickly, and Pattern.Includes exactly, whether one
// pattern matches every key another does, and a Trie finds, among many
// patterns, those that match a key or cover a pattern without trying each
// one.
//
// Words are separated by ".", and the empty string between two dots is a word
// too; the empty routing key, however, has no words at all. In a pattern, "*"
// stands for exactly one word and "#" for zero or more words. These are the
// rules RabbitMQ applies, checked against a real broker.
//
// The package imports nothing else from eventsproxy.
package topic
