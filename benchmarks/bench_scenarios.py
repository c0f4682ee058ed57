"""SIPp scenarios of the call-center benchmarks (``cc_day.py``, ``soak.py``, ``faults.py``,
``media_sipp.py``): every simulated agent's phone, Poisson callers, and a bench caller's
requests as pieces to build other callers from."""

from __future__ import annotations

AGENT_PHONES = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<!-- Every simulated agent's phone at once: all agents registered this address as their Contact,
     so each INVITE the server sends to any of them arrives here. Answers at once, talks ($talk),
     hangs up (RFC 3261 §15.1.1). A BYE from the server first is answered by SIPp's default
     behaviour. -->
<scenario name="bench agents answer">
  <recv request="INVITE" rrs="true">
    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="caller"/>
      <ereg regexp=".*" search_in="hdr" header="To:" assign_to="callee"/>
    </action>
  </recv>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]Agent[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:agents@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=agent 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 8 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15

    ]]>
  </send>
  <recv request="ACK"/>
  $pause
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$$callee];tag=[pid]Agent[call_number]
      To: [$$caller]
      [last_Call-ID:]
      CSeq: 1 BYE
      Contact: <sip:agents@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
"""

#: A bench caller's requests, as SIPp ``<send>`` steps: its INVITE (offering one G.711 law and
#: telephone-event), the ACK of the 200 and its BYE.
_CALLER_INVITE = """  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:555[call_number]@[local_ip]:[local_port]>;tag=[pid]Caller[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:555[call_number]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=caller 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP {payload_type} 101
      a=rtpmap:{payload_type} {encoding}/8000
      a=rtpmap:101 telephone-event/8000

    ]]>
  </send>
"""
CALLER_ACK = """  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:555[call_number]@[local_ip]:[local_port]>;tag=[pid]Caller[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""
CALLER_BYE = """  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:555[call_number]@[local_ip]:[local_port]>;tag=[pid]Caller[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""


def caller_invite(payload_type: int, encoding: str) -> str:
    return _CALLER_INVITE.format(payload_type=payload_type, encoding=encoding)


CALLERS = (
    """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<!-- Poisson callers by thinning: SIPp starts a call every tick; each dials only with
     probability $probability, so arrivals are a Bernoulli lattice, geometric gaps. A caller who
     dials is answered and queued by the server, then waits for the server's BYE (the agent
     hung up); after $patience_ms ms without it, it hangs up itself. With -trace_logs each step
     is logged as "step call_number seconds microseconds Call-ID". -->
<scenario name="bench callers">
  <nop>
    <action>
      <sample assign_to="draw" distribution="uniform" min="0" max="1"/>
      <test assign_to="idle" variable="draw" compare="greater_than_equal" value="$probability"/>
    </action>
  </nop>
  <nop next="done" test="idle"/>
  <nop><action>
    <gettimeofday assign_to="s,us"/>
    <log message="dial [call_number] [$$s] [$$us] [call_id]"/>
  </action></nop>
"""
    + caller_invite(0, "PCMU")
    + """  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true">
    <action>
      <gettimeofday assign_to="s,us"/>
      <log message="answered [call_number] [$$s] [$$us] [call_id]"/>
    </action>
  </recv>
"""
    + CALLER_ACK
    + """  <recv request="BYE" timeout="$patience_ms" ontimeout="give_up">
    <action>
      <gettimeofday assign_to="s,us"/>
      <log message="ended [call_number] [$$s] [$$us] [call_id]"/>
    </action>
  </recv>
  <send next="done">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <label id="give_up"/>
  <nop><action>
    <gettimeofday assign_to="s,us"/>
    <log message="gave_up [call_number] [$$s] [$$us] [call_id]"/>
  </action></nop>
"""
    + CALLER_BYE
    + """  <recv response="200"/>
  <label id="done"/>
</scenario>
"""
)
