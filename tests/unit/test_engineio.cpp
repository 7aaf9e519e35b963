#include <doctest/doctest.h>

#include <string>

#include "stickyd/engineio.hpp"

using namespace stickyd;
using namespace std::string_literals;

namespace {

// Captured from Socket.IO 4.8 / engine.io 6 (see shared/engineio-wire.md).
const std::string kEio4Body =
    R"(0{"sid":"5_S2AZdCI1bklnExAAAk","upgrades":["websocket"],"pingInterval":2000,"pingTimeout":2000,"maxPayload":1000000})";
const std::string kEio3Body =
    R"(116:0{"sid":"On0wSrAZ8mSudis7AAAl","upgrades":["websocket"],"pingInterval":2000,"pingTimeout":2000,"maxPayload":1000000})";

std::optional<OpenPacket> open_json(const std::string& json) { return parse_open_packet("0" + json); }

bool rejects(const std::string& json) { return !open_json(json).has_value(); }

// EIO3 binary framing of one string packet.
std::string binary_frame(const std::string& packet) {
  std::string out(1, '\0');
  for (char d : std::to_string(packet.size())) out.push_back(static_cast<char>(d - '0'));
  out.push_back('\xFF');
  return out + packet;
}

}  // namespace

TEST_SUITE("engineio") {
  TEST_CASE("EIO4 capture") {
    CHECK(kEio4Body.size() == 116);  // Content-Length of the capture
    auto p = parse_open_packet(kEio4Body);
    REQUIRE(p);
    CHECK(p->sid == "5_S2AZdCI1bklnExAAAk");
    REQUIRE(p->upgrades.size() == 1);
    CHECK(p->upgrades[0] == "websocket");
    CHECK(p->ping_interval_ms == 2000);
    CHECK(p->ping_timeout_ms == 2000);
    CHECK(p->max_payload == 1000000);
  }

  TEST_CASE("EIO4 with further packets after 0x1E") {
    auto p = parse_open_packet(kEio4Body + "\x1e" + "40");
    REQUIRE(p);
    CHECK(p->sid == "5_S2AZdCI1bklnExAAAk");
    p = parse_open_packet(kEio4Body + "\x1e" + "garbage that is not parsed");
    REQUIRE(p);
    CHECK_FALSE(parse_open_packet(kEio4Body + "x\x1e" + "40").has_value());
  }

  TEST_CASE("EIO3 text capture") {
    CHECK(kEio3Body.size() == 120);
    auto p = parse_open_packet(kEio3Body);
    REQUIRE(p);
    CHECK(p->sid == "On0wSrAZ8mSudis7AAAl");
    CHECK(p->upgrades == std::vector<std::string>{"websocket"});
    CHECK(p->ping_interval_ms == 2000);
    CHECK(p->ping_timeout_ms == 2000);
    CHECK(p->max_payload == 1000000);
  }

  TEST_CASE("EIO3 text with a trailing 2:40 packet") {
    auto p = parse_open_packet(kEio3Body + "2:40");
    REQUIRE(p);
    CHECK(p->sid == "On0wSrAZ8mSudis7AAAl");
  }

  TEST_CASE("EIO3 text framing errors") {
    const std::string packet = kEio3Body.substr(4);  // 0{...}
    REQUIRE(packet.size() == 116);
    CHECK_FALSE(parse_open_packet("115:" + packet).has_value());  // cuts the JSON short
    CHECK_FALSE(parse_open_packet("117:" + packet).has_value());  // longer than the body
    CHECK_FALSE(parse_open_packet("999:" + packet).has_value());
    CHECK_FALSE(parse_open_packet("116" + packet).has_value());   // no ':'
    CHECK_FALSE(parse_open_packet(":" + packet).has_value());     // no length
    CHECK_FALSE(parse_open_packet("+116:" + packet).has_value());
    CHECK_FALSE(parse_open_packet("-116:" + packet).has_value());
    CHECK_FALSE(parse_open_packet("00000000116:" + packet).has_value());  // > 7 digits
    CHECK_FALSE(parse_open_packet("116:" + packet.substr(0, 100)).has_value());  // truncated
    CHECK_FALSE(parse_open_packet("1:2").has_value());
    CHECK_FALSE(parse_open_packet("1:0").has_value());
    CHECK_FALSE(parse_open_packet("2:40").has_value());  // not an open packet
    CHECK_FALSE(parse_open_packet("0:").has_value());
    CHECK_FALSE(parse_open_packet("9999999:0").has_value());
    CHECK_FALSE(parse_open_packet("116:1" + packet.substr(1)).has_value());  // type 1 = close
    // Leading zeros are a valid number (JS Number("0116") == 116).
    CHECK(parse_open_packet("0116:" + packet).has_value());
  }

  TEST_CASE("EIO3 text length counts UTF-16 code units, not bytes") {
    // "é" is 2 bytes / 1 unit, "😀" is 4 bytes / 2 units.
    const std::string packet = "0{\"sid\":\"abc\",\"x\":\"\xC3\xA9\xF0\x9F\x98\x80\"}";
    const size_t units = packet.size() - 1 - 2;
    auto p = parse_open_packet(std::to_string(units) + ":" + packet);
    REQUIRE(p);
    CHECK(p->sid == "abc");
    CHECK_FALSE(parse_open_packet(std::to_string(packet.size()) + ":" + packet).has_value());
    CHECK_FALSE(parse_open_packet(std::to_string(units - 1) + ":" + packet).has_value());
    // A length that would end inside the surrogate pair of the emoji.
    const std::string split = "0{\"sid\":\"abc\",\"x\":\"\xF0\x9F\x98\x80\"}";
    CHECK_FALSE(parse_open_packet(std::to_string(20) + ":" + split).has_value());
  }

  TEST_CASE("EIO3 binary framing") {
    const std::string packet = kEio3Body.substr(4);
    const std::string framed = binary_frame(packet);
    CHECK(framed.substr(0, 6) == "\x00\x01\x01\x06\xFF"s + "0");
    auto p = parse_open_packet(framed);
    REQUIRE(p);
    CHECK(p->sid == "On0wSrAZ8mSudis7AAAl");
    // Followed by another packet.
    p = parse_open_packet(framed + binary_frame("40"));
    REQUIRE(p);
    CHECK(p->sid == "On0wSrAZ8mSudis7AAAl");

    CHECK_FALSE(parse_open_packet(framed.substr(0, framed.size() - 1)).has_value());  // short
    std::string bad = framed;
    bad[0] = '\x01';  // binary packet, not a string packet
    CHECK_FALSE(parse_open_packet(bad).has_value());
    bad = framed;
    bad[4] = '\xFE';  // no 0xFF separator
    CHECK_FALSE(parse_open_packet(bad).has_value());
    bad = framed;
    bad[1] = '\x0A';  // digit value out of range
    CHECK_FALSE(parse_open_packet(bad).has_value());
    CHECK_FALSE(parse_open_packet("\x00\xFF"s + packet).has_value());          // no digits
    CHECK_FALSE(parse_open_packet("\x00\x00\xFF"s + packet).has_value());      // length 0
    CHECK_FALSE(parse_open_packet("\x00\x01\x01\x06"s).has_value());           // truncated
    CHECK_FALSE(parse_open_packet("\x00"s).has_value());
    CHECK_FALSE(
        parse_open_packet("\x00\x00\x00\x00\x00\x00\x01\x01\x06\xFF"s + packet).has_value());
    CHECK(parse_open_packet("\x00\x00\x00\x00\x00\x01\x01\x06\xFF"s + packet).has_value());
    CHECK_FALSE(parse_open_packet(binary_frame("40")).has_value());
  }

  TEST_CASE("websocket-first open packet") {
    const std::string payload = kEio4Body;
    auto p = parse_open_packet_ws(payload);
    REQUIRE(p);
    CHECK(p->sid == "5_S2AZdCI1bklnExAAAk");
    CHECK(p->max_payload == 1000000);
    CHECK_FALSE(parse_open_packet_ws(payload + "\x1e" + "40").has_value());
    CHECK_FALSE(parse_open_packet_ws("2probe").has_value());
    CHECK_FALSE(parse_open_packet_ws("").has_value());
    CHECK_FALSE(parse_open_packet_ws("116:" + payload).has_value());
  }

  TEST_CASE("minimal and reordered objects, whitespace, unknown fields") {
    auto p = open_json(R"({"sid":"x"})");
    REQUIRE(p);
    CHECK(p->sid == "x");
    CHECK(p->upgrades.empty());
    CHECK(p->ping_interval_ms == -1);
    CHECK(p->ping_timeout_ms == -1);
    CHECK(p->max_payload == -1);

    p = open_json(" \t\r\n{ \"maxPayload\" : 0 , \"upgrades\" : [ ] , \"sid\" : \"y\" } \n");
    REQUIRE(p);
    CHECK(p->sid == "y");
    CHECK(p->max_payload == 0);

    p = open_json(
        R"({"extra":{"a":[1,2.5,-3e-2,true,false,null,{"b":"c"}],"d":{}},"sid":"z","n":null,"u":"\u00e9"})");
    REQUIRE(p);
    CHECK(p->sid == "z");

    // JSON.parse keeps the last of repeated keys; so does the client.
    p = open_json(R"({"sid":"first","sid":"second"})");
    REQUIRE(p);
    CHECK(p->sid == "second");
    p = open_json(R"({"upgrades":["a"],"upgrades":["websocket","webtransport"],"sid":"s"})");
    REQUIRE(p);
    CHECK(p->upgrades == std::vector<std::string>{"websocket", "webtransport"});
  }

  TEST_CASE("string escapes in sid") {
    auto p = open_json(R"({"sid":"a\"b\\c\/d\b\f\n\r\t"})");
    REQUIRE(p);
    CHECK(p->sid == "a\"b\\c/d\b\f\n\r\t");
    p = open_json(R"({"sid":"\u0041\u00e9\u20AC\ud83d\ude00"})");
    REQUIRE(p);
    CHECK(p->sid == "A\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
    p = open_json(R"({"sid":"\ud83dx"})");  // lone high surrogate, as JSON.parse allows
    REQUIRE(p);
    CHECK(p->sid == "\xED\xA0\xBDx");
    p = open_json(R"({"sid":"\ud83d\u0041"})");
    REQUIRE(p);
    CHECK(p->sid == "\xED\xA0\xBD" "A");
    p = open_json(R"({"sid":"\u0000"})");
    REQUIRE(p);
    CHECK(p->sid == std::string("\0", 1));
    CHECK(rejects(R"({"sid":"\x41"})"));
    CHECK(rejects(R"({"sid":"\u00g1"})"));
    CHECK(rejects(R"({"sid":"\u00e"})"));
    CHECK(rejects(R"({"sid":"\ud83d\u00"})"));
    CHECK(rejects("{\"sid\":\"a\nb\"}"));   // raw control character
    CHECK(rejects("{\"sid\":\"a\tb\"}"));
    CHECK(rejects(R"({"sid":"abc)"));
    CHECK(rejects(R"({"sid":"abc\)"));
  }

  TEST_CASE("broken inputs") {
    CHECK_FALSE(parse_open_packet("").has_value());
    CHECK_FALSE(parse_open_packet("0").has_value());
    CHECK_FALSE(parse_open_packet("1{\"sid\":\"x\"}").has_value());
    CHECK_FALSE(parse_open_packet("4{\"sid\":\"x\"}").has_value());
    CHECK_FALSE(parse_open_packet("{\"sid\":\"x\"}").has_value());
    CHECK_FALSE(parse_open_packet("x").has_value());
    CHECK_FALSE(parse_open_packet(R"({"code":1,"message":"Session ID unknown"})").has_value());
    CHECK_FALSE(parse_open_packet(kEio4Body.substr(0, 60)).has_value());  // truncated
    for (size_t n = 0; n < kEio4Body.size(); ++n) {
      CHECK_FALSE(parse_open_packet(kEio4Body.substr(0, n)).has_value());
    }
    for (size_t n = 0; n < kEio3Body.size(); ++n) {
      CHECK_FALSE(parse_open_packet(kEio3Body.substr(0, n)).has_value());
    }
  }

  TEST_CASE("bad JSON") {
    CHECK(rejects(""));
    CHECK(rejects("[]"));
    CHECK(rejects(R"("sid")"));
    CHECK(rejects("null"));
    CHECK(rejects("{"));
    CHECK(rejects("{}"));
    CHECK(rejects(R"({"sid":"x",})"));
    CHECK(rejects(R"({"sid":"x"}})"));
    CHECK(rejects(R"({"sid":"x"} x)"));
    CHECK(rejects(R"({"sid":"x"}{})"));
    CHECK(rejects(R"({'sid':'x'})"));
    CHECK(rejects(R"({sid:"x"})"));
    CHECK(rejects(R"({"sid" "x"})"));
    CHECK(rejects(R"({"sid":"x" "a":1})"));
    CHECK(rejects(R"({"sid":"x","a":})"));
    CHECK(rejects(R"({"sid":"x","a":tru})"));
    CHECK(rejects(R"({"sid":"x","a":nul})"));
    CHECK(rejects(R"({"sid":"x","a":01})"));
    CHECK(rejects(R"({"sid":"x","a":1.})"));
    CHECK(rejects(R"({"sid":"x","a":.5})"));
    CHECK(rejects(R"({"sid":"x","a":1e})"));
    CHECK(rejects(R"({"sid":"x","a":-})"));
    CHECK(rejects(R"({"sid":"x","a":+1})"));
    CHECK(rejects(R"({"sid":"x","a":[1,]})"));
    CHECK(rejects(R"({"sid":"x","a":[1 2]})"));
    CHECK(rejects(R"({"sid":"x","a":{"b"}})"));
    CHECK(rejects(R"({"sid":"x","a":NaN})"));
    CHECK(rejects("{\"sid\":\"x\"}\x00"s));
  }

  TEST_CASE("sid must be a non-empty string") {
    CHECK(rejects(R"({"upgrades":["websocket"],"pingInterval":25000})"));
    CHECK(rejects(R"({"sid":""})"));
    CHECK(rejects(R"({"sid":123})"));
    CHECK(rejects(R"({"sid":null})"));
    CHECK(rejects(R"({"sid":true})"));
    CHECK(rejects(R"({"sid":["x"]})"));
    CHECK(rejects(R"({"sid":{"x":1}})"));
    CHECK(rejects(R"({"SID":"x"})"));
  }

  TEST_CASE("numbers: non-negative safe integers only for the known fields") {
    CHECK(open_json(R"({"sid":"x","pingInterval":9007199254740991})").value().ping_interval_ms ==
          9007199254740991);
    CHECK(rejects(R"({"sid":"x","pingInterval":9007199254740992})"));
    CHECK(rejects(R"({"sid":"x","pingInterval":99999999999999999999999999999999})"));
    CHECK(rejects(R"({"sid":"x","pingTimeout":-1})"));
    CHECK(rejects(R"({"sid":"x","pingTimeout":-0})"));
    CHECK(rejects(R"({"sid":"x","pingTimeout":1.5})"));
    CHECK(rejects(R"({"sid":"x","pingTimeout":2e3})"));
    CHECK(rejects(R"({"sid":"x","maxPayload":"1000000"})"));
    CHECK(rejects(R"({"sid":"x","maxPayload":null})"));
    CHECK(open_json(R"({"sid":"x","maxPayload":0})").value().max_payload == 0);
    // Unknown fields may hold any valid number, however large.
    CHECK(open_json(R"({"sid":"x","big":1e999,"n":-123456789012345678901234567890.5e-7})"));
    CHECK(rejects(R"({"sid":"x","upgrades":"websocket"})"));
    CHECK(rejects(R"({"sid":"x","upgrades":[1]})"));
    CHECK(rejects(R"({"sid":"x","upgrades":["websocket",]})"));
  }

  TEST_CASE("deep nesting is bounded") {
    auto nested = [](int depth) {
      return std::string(R"({"sid":"x","a":)") + std::string(depth, '[') +
             std::string(depth, ']') + "}";
    };
    CHECK(open_json(nested(10)));
    CHECK(open_json(nested(31)));
    CHECK(rejects(nested(40)));
    CHECK(rejects(nested(100000)));
    CHECK(rejects(std::string(R"({"sid":"x","a":)") + std::string(100000, '[')));
    std::string objs = R"({"sid":"x","a":)";
    for (int i = 0; i < 50000; ++i) objs += R"({"b":)";
    CHECK(rejects(objs + "1" + std::string(50000, '}') + "}"));
  }

  TEST_CASE("is_reflectable_sid") {
    CHECK(is_reflectable_sid("5_S2AZdCI1bklnExAAAk"));
    CHECK(is_reflectable_sid("a"));
    CHECK(is_reflectable_sid(std::string(256, 'a')));
    CHECK_FALSE(is_reflectable_sid(std::string(257, 'a')));
    CHECK_FALSE(is_reflectable_sid(""));
    CHECK_FALSE(is_reflectable_sid("a b"));
    CHECK_FALSE(is_reflectable_sid("a;b"));
    CHECK_FALSE(is_reflectable_sid("a,b"));
    CHECK_FALSE(is_reflectable_sid("a\"b"));
    CHECK_FALSE(is_reflectable_sid("a\\b"));
    CHECK_FALSE(is_reflectable_sid("a\r\nSet-Cookie: x=1"));
    CHECK_FALSE(is_reflectable_sid("\xC3\xA9"));
    CHECK(is_reflectable_sid("custom-id:42/x=y"));
  }
}
