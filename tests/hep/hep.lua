-- A HEP3 dissector for tshark, written for sipscope's tests from the
-- HEP3 Network Protocol Specification (rev. 37, github.com/sipcapture/HEP,
-- docs/HEP3_Network_Protocol_Specification_REV_37.pdf): Wireshark 4.0, the
-- tshark Debian ships, has no HEP dissector of its own. Load it with
--   tshark -X lua_script:tests/hep/hep.lua -d udp.port==9060,hep -r FILE
-- The captured payload of a SIP packet (protocol type 1) is handed to
-- Wireshark's own SIP dissector. MIT OR Apache-2.0, like the project.

local hep = Proto("hep", "HEP3 (Homer Encapsulation Protocol v3)")

local f = hep.fields
f.length = ProtoField.uint16("hep.length", "Total length")
f.vendor = ProtoField.uint16("hep.chunk.vendor", "Chunk vendor", base.HEX)
f.ctype = ProtoField.uint16("hep.chunk.type", "Chunk type", base.HEX)
f.clen = ProtoField.uint16("hep.chunk.length", "Chunk length")
f.family = ProtoField.uint8("hep.ip_family", "IP family")
f.ipproto = ProtoField.uint8("hep.ip_proto", "IP protocol")
f.src4 = ProtoField.ipv4("hep.src_ip", "Source IPv4")
f.dst4 = ProtoField.ipv4("hep.dst_ip", "Destination IPv4")
f.src6 = ProtoField.ipv6("hep.src_ip6", "Source IPv6")
f.dst6 = ProtoField.ipv6("hep.dst_ip6", "Destination IPv6")
f.sport = ProtoField.uint16("hep.src_port", "Source port")
f.dport = ProtoField.uint16("hep.dst_port", "Destination port")
f.tsec = ProtoField.uint32("hep.time_sec", "Timestamp seconds")
f.tusec = ProtoField.uint32("hep.time_usec", "Timestamp microseconds")
f.ptype = ProtoField.uint8("hep.proto_type", "Protocol type")
f.capid = ProtoField.uint32("hep.capture_id", "Capture agent ID")
f.auth = ProtoField.string("hep.auth_key", "Authentication key")
f.payload = ProtoField.bytes("hep.payload", "Captured payload", base.NONE)
f.corr = ProtoField.string("hep.correlation_id", "Correlation ID")
f.node = ProtoField.string("hep.node_name", "Node name")
f.unknown = ProtoField.bytes("hep.unknown", "Unknown chunk")

local by_type = {
  [0x0001] = f.family, [0x0002] = f.ipproto,
  [0x0003] = f.src4, [0x0004] = f.dst4, [0x0005] = f.src6, [0x0006] = f.dst6,
  [0x0007] = f.sport, [0x0008] = f.dport,
  [0x0009] = f.tsec, [0x000a] = f.tusec, [0x000b] = f.ptype,
  [0x000c] = f.capid, [0x000e] = f.auth, [0x000f] = f.payload,
  [0x0011] = f.corr, [0x0013] = f.node,
}

local sip = Dissector.get("sip")

-- One HEP3 packet at `offset`; returns its length, or a negative number of
-- missing bytes (TCP: ask for more), or 0 when it is not HEP3.
local function one(tvb, pinfo, tree, offset)
  local left = tvb:len() - offset
  if left < 6 then return -(6 - left) end
  if tvb(offset, 4):string() ~= "HEP3" then return 0 end
  local total = tvb(offset + 4, 2):uint()
  if total < 6 then return 0 end
  if left < total then return -(total - left) end
  local t = tree:add(hep, tvb(offset, total))
  t:add(f.length, tvb(offset + 4, 2))
  local at = offset + 6
  local sip_payload, ptype = nil, nil
  while at + 6 <= offset + total do
    local vendor = tvb(at, 2):uint()
    local ctype = tvb(at + 2, 2):uint()
    local clen = tvb(at + 4, 2):uint()
    if clen < 6 or at + clen > offset + total then break end
    local body = tvb(at + 6, clen - 6)
    local field = vendor == 0 and by_type[ctype] or f.unknown
    t:add(field, body)
    if vendor == 0 and ctype == 0x000b then ptype = body:uint() end
    if vendor == 0 and ctype == 0x000f then sip_payload = body end
    at = at + clen
  end
  if ptype == 1 and sip_payload ~= nil and sip ~= nil then
    sip:call(sip_payload:tvb("HEP payload"), pinfo, tree)
  end
  return total
end

function hep.dissector(tvb, pinfo, tree)
  pinfo.cols.protocol = "HEP3"
  local offset = 0
  while offset < tvb:len() do
    local n = one(tvb, pinfo, tree, offset)
    if n == 0 then return offset end
    if n < 0 then
      pinfo.desegment_offset = offset
      pinfo.desegment_len = -n
      return tvb:len()
    end
    offset = offset + n
  end
  return offset
end

DissectorTable.get("udp.port"):add(9060, hep)
DissectorTable.get("tcp.port"):add(9060, hep)
