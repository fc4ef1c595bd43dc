// The C side of Runtime.OnEvent and Runtime.OnThink: libclove calls `deliver` on its reactor
// thread (`answer_think` on a THINK worker thread) with the runtime/cgo.Handle of the Go function
// as user_data, and they pass both on to Go.

#include <stdint.h>

#include "clove.h"
#include "_cgo_export.h"

static void deliver(const clove_event *event, void *user_data) {
  cloveDeliverEvent((clove_event *)event, (uintptr_t)user_data);
}

static void answer_think(const clove_think_request *request, clove_think_answer *answer,
                         void *user_data) {
  cloveAnswerThink((clove_think_request *)request, answer, (uintptr_t)user_data);
}

// Sets the Go think handler registered under `handle`; 0 removes it.
enum clove_status clove_go_set_think_handler(clove_runtime *rt, uintptr_t handle) {
  return clove_runtime_set_think_handler(rt, handle ? answer_think : NULL, (void *)handle);
}

// Sets the Go callback registered under `handle`; 0 clears it. The handle travels as an integer
// so that Go never turns it into a pointer.
enum clove_status clove_go_set_event_callback(clove_runtime *rt, uintptr_t handle) {
  return clove_runtime_set_event_callback(rt, handle ? deliver : NULL, (void *)handle);
}
