package router

// outcome says what became of a request, or of one try of it, when the
// client does not simply get an instance's response: why the router
// answers with a response of its own, or why it answers nothing. The status
// and the words of that answer come from one table (answers), so each
// message is written once, whichever step met the condition. A small
// integer rather than an error value: the request path allocates nothing.
type outcome uint8

const (
	// outResponse: an instance's response head was read; it is passed on.
	outResponse outcome = iota
	// outReroute: the version left the table before anything was sent;
	// the request is routed again on the new table. Never answered.
	outReroute
	// outClientGone: the client went away (or stalled in its body);
	// there is no one to answer.
	outClientGone
	// outTunnel: an upgrade's 101 went to the client and the tunnel ran;
	// the request was counted already.
	outTunnel

	// The router refuses the request.
	outUnknownHost
	outUnknownService
	outUnknownVersion
	outStopped
	outNoVersion
	outNoInstance
	outHeadTooLarge
	outMalformedRequest
	outUnsupportedCoding
	outExpectation
	outBodyTooLarge
	outMalformedBody

	// An instance failed the request.
	outClosedSilently // closed the connection before any response byte (retryable)
	outResetSilently  // reset the connection before any response byte (retryable)
	outWriteFailed    // the connection failed while the request was written
	outTimeout        // no response head within Limits.UpstreamTimeout
	outRespHeadTooLarge
	outMalformedResp
	outCutHead // the connection failed in the middle of the response head
	outNoAnswer
	outSwitchedUnasked // a 101 to a request that asked for no upgrade
)

// answers is what the client gets for each outcome the router answers
// itself: the status and the message after "sluice: ".
var answers = [...]struct {
	status int
	msg    string
}{
	outUnknownHost:       {404, "unknown host"},
	outUnknownService:    {404, "unknown service"},
	outUnknownVersion:    {404, "unknown version"},
	outStopped:           {503, msgStopped},
	outNoVersion:         {503, "no version of this service serves traffic yet"},
	outNoInstance:        {503, "no instance of this version is running"},
	outHeadTooLarge:      {431, "request header fields too large"},
	outMalformedRequest:  {400, "malformed request"},
	outUnsupportedCoding: {501, "unsupported transfer coding"},
	outExpectation:       {417, "unsupported expectation"},
	outBodyTooLarge:      {413, "request body too large"},
	outMalformedBody:     {400, "malformed request body"},

	outClosedSilently:   {502, "the instance closed the connection without answering"},
	outResetSilently:    {502, "the instance reset the connection without answering"},
	outWriteFailed:      {502, "the instance closed the connection before the request was sent"},
	outTimeout:          {504, "the instance did not answer in time"},
	outRespHeadTooLarge: {502, "response head too large"},
	outMalformedResp:    {502, "malformed response head"},
	outCutHead:          {502, "the instance closed the connection in the middle of its response head"},
	outNoAnswer:         {502, "the instance did not answer"},
	outSwitchedUnasked:  {502, "the instance switched protocols unasked"},
}

// status is the status of the router's answer for o; 0 for the outcomes
// it does not answer (outResponse, outReroute, outClientGone, outTunnel).
func (o outcome) status() int {
	if int(o) < len(answers) {
		return answers[o].status
	}
	return 0
}

// retryable reports whether an instance's failure left the request unseen
// as far as anyone can tell (no byte of a response came): an idempotent
// request may be sent again.
func (o outcome) retryable() bool {
	return o == outClosedSilently || o == outResetSilently
}
