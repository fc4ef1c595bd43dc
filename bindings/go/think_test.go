package clove_test

import (
	"errors"
	"testing"

	"clove.dev/clove"
)

func TestThinkHandlerAnswersAnAgent(t *testing.T) {
	rt := newRuntime(t, clove.WithLLM("", "", "", ""), clove.WithHTTPRefuseNonPublic(true))
	seen := make(chan clove.ThinkRequest, 4)
	err := rt.OnThink(func(r clove.ThinkRequest) (clove.ThinkAnswer, error) {
		seen <- r
		if r.Prompt == "fail" {
			return clove.ThinkAnswer{}, errors.New("no model for that")
		}
		return clove.ThinkAnswer{Text: "echo: " + r.Prompt, Model: "go-model", InputTokens: 7, OutputTokens: 3}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	spec := pythonAgent(t, "thinker", `
from clove_sdk import CloveClient
with CloveClient() as c:
    r = c.think("hello", image=b"\x01\x02", image_mime_type="image/png", system_instruction="sys",
                temperature=0.5)
    f = c.think("fail")
    ok = (r["content"], r["model"], r["provider"], r["tokens"]) == ("echo: hello", "go-model", "host", 10)
    ok = ok and f["success"] is False and "no model for that" in f["error"]
    raise SystemExit(0 if ok else 1)
`)
	spec.Sandboxed = false
	agent := spawn(t, rt, spec)
	if exit := wait(t, agent); exit.Code != 0 {
		t.Fatalf("the agent did not get the answers it expected: %+v", exit)
	}
	r := <-seen
	if r.AgentID != agent.ID || r.Prompt != "hello" || r.SystemInstruction != "sys" || r.Model != "" {
		t.Errorf("the handler saw %+v", r)
	}
	if string(r.Image) != "\x01\x02" || r.ImageMIMEType != "image/png" || !r.HasTemperature || r.Temperature != 0.5 {
		t.Errorf("the handler saw image %q %q, temperature %v %v", r.Image, r.ImageMIMEType, r.HasTemperature, r.Temperature)
	}
	if err := rt.OnThink(nil); err != nil {
		t.Fatal(err)
	}
}

func TestWithLLMRefusesAnUnknownProvider(t *testing.T) {
	_, err := clove.NewRuntime(clove.WithLLM("mystery", "", "", ""))
	if !errors.Is(err, clove.ErrInvalidArgument) {
		t.Fatalf("NewRuntime: %v, want ErrInvalidArgument", err)
	}
}
