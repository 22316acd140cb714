package ami

import (
	"encoding/json"
	"strconv"
	"strings"
)

// Models the AMI events map to.
const (
	ModelCall      = "call"
	ModelCDR       = "cdr"
	ModelAgent     = "agent"
	ModelPresence  = "presence"
	ModelVoicemail = "voicemail"
)

// eventModel is the model of each AMI event mapped (the Event header,
// lower case).
var eventModel = map[string]string{
	"newchannel": ModelCall, "newstate": ModelCall, "newcallerid": ModelCall, "newconnectedline": ModelCall,
	"dialbegin": ModelCall, "dialend": ModelCall, "hangup": ModelCall,
	"bridgeenter": ModelCall, "bridgeleave": ModelCall, "hold": ModelCall, "unhold": ModelCall,
	"cdr":              ModelCDR,
	"queuememberadded": ModelAgent, "queuememberremoved": ModelAgent, "queuememberpause": ModelAgent,
	"queuememberstatus": ModelAgent, "queuememberpenalty": ModelAgent, "queuememberringinuse": ModelAgent,
	"agentlogin": ModelAgent, "agentlogoff": ModelAgent, "agentcalled": ModelAgent, "agentconnect": ModelAgent, "agentcomplete": ModelAgent,
	"devicestatechange": ModelPresence, "peerstatus": ModelPresence, "contactstatus": ModelPresence, "extensionstatus": ModelPresence,
	"messagewaiting": ModelVoicemail,
}

// Mapping options: the scope AMI does not carry.
type Mapping struct {
	// Domain is the domain of events whose AccountCode is empty ("" for
	// none). With an AccountCode, that is the domain.
	Domain string
}

// Map turns one AMI event into a hookswitch event (a JSON object), or nil
// when the event is not one hookswitch maps (responses, other events).
// Every field of the AMI event is kept, under its key in lower case
// (`CallerIDNum` → `calleridnum`); the mapped fields are added.
func (mp Mapping) Map(m Message) []byte {
	name := m.Get("Event")
	model, ok := eventModel[strings.ToLower(name)]
	if !ok {
		return nil
	}
	out := map[string]any{}
	for _, f := range m {
		k := strings.ToLower(f.Key)
		switch k {
		case "model", "event-id", "node", "ingest-time", "reseller", "domain", "user", "event":
			continue
		}
		if _, dup := out[k]; !dup {
			out[k] = f.Value
		}
	}
	out["model"] = model
	out["source"] = "ami"
	out["ami_event"] = name
	domain := m.Get("AccountCode")
	if domain == "" {
		domain = mp.Domain
	}
	if domain != "" {
		out["domain"] = domain
	}
	switch model {
	case ModelCall:
		mapCall(m, out)
	case ModelCDR:
		mapCDR(m, out)
	case ModelAgent:
		mapAgent(m, out)
	case ModelPresence:
		mapPresence(m, out)
	case ModelVoicemail:
		mapVoicemail(m, out)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil
	}
	return b
}

// users sets user to the non-empty distinct values.
func users(out map[string]any, vs ...string) {
	var list []string
	for _, v := range vs {
		if v == "" || v == "<unknown>" || contains(list, v) {
			continue
		}
		list = append(list, v)
	}
	switch len(list) {
	case 0:
	case 1:
		out["user"] = list[0]
	default:
		out["user"] = list
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// mapCall: channel and bridge events. A call is the channels of one
// Linkedid: orig_callid is it; callid is the channel's Uniqueid.
func mapCall(m Message, out map[string]any) {
	uid, linked := m.Get("Uniqueid"), m.Get("Linkedid")
	if linked == "" {
		linked = uid
	}
	out["callid"] = uid
	out["orig_callid"] = linked
	// orig_* only when AMI says: an event without them (a bridge event
	// has no CallerIDName) must not look like a change to call_origid.
	for k, v := range map[string]string{"orig_from_user": m.Get("CallerIDNum"), "orig_from_name": m.Get("CallerIDName"), "orig_to_user": m.Get("Exten")} {
		if v != "" && v != "<unknown>" {
			out[k] = v
		}
	}
	out["channel"] = m.Get("Channel")
	state := strings.ToLower(m.Get("ChannelStateDesc"))
	switch strings.ToLower(m.Get("Event")) {
	case "newchannel":
		out["event"] = "start"
	case "newstate":
		out["event"] = "update"
		if state == "up" {
			out["event"] = "answer"
		}
	case "hangup":
		out["event"] = "end"
		out["remove"] = "yes"
		state = "ended"
	case "bridgeenter":
		out["event"] = "bridge"
	case "bridgeleave":
		out["event"] = "unbridge"
	default:
		out["event"] = "update"
	}
	if state != "" {
		out["call-state"] = state
	}
	users(out, m.Get("CallerIDNum"), m.Get("ConnectedLineNum"))
}

// dispositions of Asterisk's CDR, to the names the Kamailio source uses.
var dispositions = map[string]string{
	"ANSWERED": "answered", "NO ANSWER": "no-answer", "BUSY": "busy", "FAILED": "failed", "CONGESTION": "failed",
}

func mapCDR(m Message, out map[string]any) {
	uid := m.Get("UniqueID")
	out["callid"] = uid
	out["orig_callid"] = uid
	out["from"] = m.Get("Source")
	out["to"] = m.Get("Destination")
	out["time_start"] = m.Get("StartTime")
	out["time_answer"] = m.Get("AnswerTime")
	out["time_release"] = m.Get("EndTime")
	if d, err := strconv.ParseInt(m.Get("BillableSeconds"), 10, 64); err == nil {
		out["duration"] = d
	}
	if d, err := strconv.ParseInt(m.Get("Duration"), 10, 64); err == nil {
		out["total_duration"] = d
	}
	disp := strings.ToUpper(m.Get("Disposition"))
	if d, ok := dispositions[disp]; ok {
		out["disposition"] = d
	} else {
		out["disposition"] = strings.ToLower(disp)
	}
	out["answered"] = disp == "ANSWERED"
	users(out, m.Get("Source"), m.Get("Destination"))
}

// mapAgent: queue member events. The agent is the member's interface
// (`PJSIP/1001`); user is its last part.
func mapAgent(m Message, out map[string]any) {
	iface := firstOf(m, "Interface", "Location", "StateInterface", "Agent")
	out["queue"] = m.Get("Queue")
	out["agent"] = iface
	out["agent-name"] = m.Get("MemberName")
	out["event"] = strings.ToLower(m.Get("Event"))
	if p := m.Get("Paused"); p != "" {
		out["paused"] = p == "1" || strings.EqualFold(p, "yes") || strings.EqualFold(p, "true")
	}
	users(out, lastPart(iface))
}

// mapPresence: device, peer, contact and extension state.
func mapPresence(m Message, out map[string]any) {
	dev := firstOf(m, "Device", "Peer", "AOR", "Exten")
	status := strings.ToLower(firstOf(m, "State", "PeerStatus", "ContactStatus", "StatusText"))
	out["device"] = dev
	out["user-presence-status"] = status
	users(out, lastPart(dev))
}

// mapVoicemail: MessageWaiting (Mailbox: 1001@default, Waiting, New, Old).
func mapVoicemail(m Message, out map[string]any) {
	box := m.Get("Mailbox")
	user, ctx, _ := strings.Cut(box, "@")
	out["mailbox"] = box
	out["mailbox-context"] = ctx
	for _, k := range []string{"New", "Old"} {
		if n, err := strconv.ParseInt(m.Get(k), 10, 64); err == nil {
			out[strings.ToLower(k)] = n
		}
	}
	out["waiting"] = strings.EqualFold(m.Get("Waiting"), "yes") || m.Get("Waiting") == "1"
	users(out, user)
}

func firstOf(m Message, keys ...string) string {
	for _, k := range keys {
		if v := m.Get(k); v != "" {
			return v
		}
	}
	return ""
}

// lastPart is what follows the last '/' ("PJSIP/1001" → "1001"), without
// a ";…" or "@…" suffix.
func lastPart(s string) string {
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.IndexAny(s, ";@-"); i > 0 && !strings.HasPrefix(s, "-") {
		s = s[:i]
	}
	return s
}
