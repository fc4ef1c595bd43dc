// The C side of Runtime.OnEvent: libclove calls `deliver` on its reactor thread with the
// runtime/cgo.Handle of the Go callback as user_data, and `deliver` passes both on to Go.

#include <stdint.h>

#include "clove.h"
#include "_cgo_export.h"

static void deliver(const clove_event *event, void *user_data) {
  cloveDeliverEvent((clove_event *)event, (uintptr_t)user_data);
}

// Sets the Go callback registered under `handle`; 0 clears it. The handle travels as an integer
// so that Go never turns it into a pointer.
enum clove_status clove_go_set_event_callback(clove_runtime *rt, uintptr_t handle) {
  return clove_runtime_set_event_callback(rt, handle ? deliver : NULL, (void *)handle);
}
