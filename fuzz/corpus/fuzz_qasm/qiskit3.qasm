OPENQASM 3.0;
include "stdgates.inc";
gate rzx(_gate_p_0) _gate_q_0, _gate_q_1 {
  h _gate_q_1;
  cx _gate_q_0, _gate_q_1;
  rz(_gate_p_0) _gate_q_1;
  cx _gate_q_0, _gate_q_1;
  h _gate_q_1;
}
gate ph(θ) a { gphase(θ); }
bit[2] c;
bit b;
qubit[3] q;
/* modifiers */
h q[0];
ctrl @ x q[0], q[1];
ctrl(2) @ z q[0], q[1], q[2];
negctrl @ h q[2], q[0];
inv @ pow(2) @ rzx(π/4) q[1], q[2];
ctrl @ ph(0.5) q[0], q[1];
c[0] = measure q[0];
c[1] = measure q[1];
b = measure q[2];
if (c[0]) { x q[1]; } else { z q[1]; }
if (c == 3) x q[0];
barrier;
