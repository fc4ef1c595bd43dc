package clove

/*
#include <stdint.h>
#include <stdlib.h>
#include "clove.h"

enum clove_status clove_go_set_think_handler(clove_runtime *rt, uintptr_t handle);
*/
import "C"

import (
	"fmt"
	"runtime/cgo"
	"strings"
	"unsafe"
)

// WithLLM sets the provider THINK asks when no think handler is set, instead of the one the
// environment names (docs/services.md): provider is "openai" (any OpenAI-compatible server),
// "gemini" or "anthropic", or "" for none at all; baseURL, apiKey and model may each be "" for
// the provider's default (no key).
func WithLLM(provider, baseURL, apiKey, model string) Option {
	return func(o *runtimeOptions) {
		p, u, k, m := o.optionalStr(provider), o.optionalStr(baseURL), o.optionalStr(apiKey), o.optionalStr(model)
		o.do(func() C.enum_clove_status { return C.clove_runtime_options_set_llm(o.c, p, u, k, m) })
	}
}

// WithHTTPRefuseNonPublic sets whether agents' HTTP is refused for loopback, private and
// link-local addresses, checked on every address a name resolves to (default true).
func WithHTTPRefuseNonPublic(refuse bool) Option {
	return func(o *runtimeOptions) {
		o.do(func() C.enum_clove_status {
			return C.clove_runtime_options_set_http_refuse_non_public(o.c, C.bool(refuse))
		})
	}
}

// ThinkRequest is an agent's THINK as a think handler sees it.
type ThinkRequest struct {
	AgentID           uint64
	AgentName         string
	Prompt            string
	SystemInstruction string // "" when none
	Model             string // "" when the agent named none: the handler's own choice
	Image             []byte // nil when none
	ImageMIMEType     string
	HasTemperature    bool
	Temperature       float64
	// MaxTokens is the agent's cap, lowered to what its quota has left; 0 for no limit.
	MaxTokens     int
	ThinkingLevel string
}

// ThinkAnswer is what a think handler answers. The tokens count against the agent's quota;
// Model "" means the one asked for.
type ThinkAnswer struct {
	Text         string
	Model        string
	InputTokens  uint64
	OutputTokens uint64
}

// OnThink sets fn to answer every agent's THINK instead of the LLM provider, replacing any
// earlier function; nil removes it. An error from fn (or a panic) fails that THINK with its
// message. Once OnThink returns, the earlier function is not running and will not be called
// again.
//
// fn runs on the runtime's THINK worker threads, several at once when several agents think, never
// on the reactor thread: it may call this Runtime's methods, but not OnThink nor Close.
func (rt *Runtime) OnThink(fn func(ThinkRequest) (ThinkAnswer, error)) error {
	rt.thinkMu.Lock()
	defer rt.thinkMu.Unlock()
	var handle cgo.Handle
	if fn != nil {
		handle = cgo.NewHandle(fn)
	}
	err := rt.call(func(p *C.clove_runtime) C.enum_clove_status {
		return C.clove_go_set_think_handler(p, C.uintptr_t(handle))
	})
	if err != nil {
		if handle != 0 {
			handle.Delete()
		}
		return err
	}
	if rt.think != 0 {
		rt.think.Delete()
	}
	rt.think = handle
	return nil
}

func optionalGoString(s *C.char) string {
	if s == nil {
		return ""
	}
	return C.GoString(s)
}

func thinkRequestFromC(r *C.clove_think_request) ThinkRequest {
	request := ThinkRequest{
		AgentID:           uint64(r.agent_id),
		AgentName:         C.GoString(r.agent_name),
		Prompt:            C.GoString(r.prompt),
		SystemInstruction: optionalGoString(r.system_instruction),
		Model:             optionalGoString(r.model),
		ImageMIMEType:     optionalGoString(r.image_mime_type),
		HasTemperature:    bool(r.has_temperature),
		Temperature:       float64(r.temperature),
		MaxTokens:         int(r.max_tokens),
		ThinkingLevel:     optionalGoString(r.thinking_level),
	}
	if r.image != nil {
		request.Image = C.GoBytes(unsafe.Pointer(r.image), C.int(r.image_len))
	}
	return request
}

// ask runs fn, turning a panic into an error: nothing may unwind into C.
func ask(fn func(ThinkRequest) (ThinkAnswer, error), request ThinkRequest) (answer ThinkAnswer, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("the think handler panicked: %v", p)
		}
	}()
	return fn(request)
}

// setString calls a think answer setter with s copied to C memory, refusing a NUL inside it.
func setString(set func(*C.char) C.enum_clove_status, s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return invalidArgument("clove: %q holds a NUL byte", s)
	}
	cs := C.CString(s)
	defer C.free(unsafe.Pointer(cs))
	return check(func() C.enum_clove_status { return set(cs) })
}

// cloveAnswerThink runs on a THINK worker thread, called by the C trampoline for every THINK.
//
//export cloveAnswerThink
func cloveAnswerThink(request *C.clove_think_request, answer *C.clove_think_answer, handle C.uintptr_t) {
	fn := cgo.Handle(handle).Value().(func(ThinkRequest) (ThinkAnswer, error))
	result, err := ask(fn, thinkRequestFromC(request))
	if err == nil {
		err = setString(func(s *C.char) C.enum_clove_status { return C.clove_think_answer_set_text(answer, s) }, result.Text)
	}
	if err == nil && result.Model != "" {
		err = setString(func(s *C.char) C.enum_clove_status { return C.clove_think_answer_set_model(answer, s) }, result.Model)
	}
	if err == nil {
		err = check(func() C.enum_clove_status {
			return C.clove_think_answer_set_usage(answer, C.uint64_t(result.InputTokens), C.uint64_t(result.OutputTokens))
		})
	}
	if err != nil {
		message := strings.ReplaceAll(err.Error(), "\x00", " ")
		// Only a NUL could make this fail, and it was just replaced.
		_ = setString(func(s *C.char) C.enum_clove_status { return C.clove_think_answer_set_error(answer, s) }, message)
	}
}
