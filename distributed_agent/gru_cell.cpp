// The elementwise work of one GRU-cell step of K members, forward and backward, each in one pass
// over memory: the CPU path of fused_rollout.FusedRollout (built by gru_kernels.py).
//
// Each function computes exactly the torch operations it replaces in fused_rollout.py (the
// reference, and the path on other devices), in the same order, with the same roundings: products
// and sums are separate roundings (built with -ffp-contract=off, so the compiler fuses none), and
// where torch's addcmul fuses (an FMA in this torch build's kernels, measured), std::fma does too.
// Sigmoids stay torch's (its vectorised exp rounds differently from std::exp), so the forward is
// three passes around two torch sigmoids. tests/test_gru_kernels.py checks every output bit for bit.
//
// Layout: every [K, B, n] tensor may be a strided view (member-major and time-major buffers), but
// its last axis is contiguous; rows are (member, episode) pairs.

#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <cmath>

namespace {

struct Rows {  // row (k, b) of a [K, B, n] view with a contiguous last axis
  float* data;
  int64_t member_stride, episode_stride;
  explicit Rows(const torch::Tensor& t)
      : data(t.data_ptr<float>()), member_stride(t.stride(0)), episode_stride(t.stride(1)) {
    TORCH_CHECK(t.dim() == 3 && t.stride(2) == 1 && t.scalar_type() == torch::kFloat,
                "gru_cell: expected a float [K, B, n] tensor with a contiguous last axis");
  }
  float* operator()(int64_t k, int64_t b) const { return data + k * member_stride + b * episode_stride; }
};

const float* table_data(const torch::Tensor& flat_table) {  // [K * V, 3d], rows contiguous
  TORCH_CHECK(flat_table.dim() == 2 && flat_table.stride(1) == 1 && flat_table.scalar_type() == torch::kFloat,
              "gru_cell: expected a float [K * V, 3d] input table with contiguous rows");
  return flat_table.data_ptr<float>();
}

// Calls row_work(k, b) for every row, in parallel over torch's intra-op threads (the rows are
// independent, so the split does not change any number).
template <typename RowWork>
void for_each_row(int64_t members, int64_t batch, RowWork row_work) {
  at::parallel_for(0, members * batch, 64, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) row_work(row / batch, row % batch);
  });
}

}  // namespace

// gates[k, b, :2d] = input_table[rows[k, b], :2d] + from_hidden[k, b, :2d]   (then sigmoid)
void gates_preactivation(const torch::Tensor& flat_table, const torch::Tensor& rows, const torch::Tensor& from_hidden,
                         torch::Tensor& gates) {
  const int64_t members = gates.size(0), batch = gates.size(1), width = gates.size(2);
  const Rows hidden_rows(from_hidden), gate_rows(gates);
  const float* table = table_data(flat_table);
  const int64_t table_stride = flat_table.stride(0);
  const auto row_index = rows.accessor<int64_t, 2>();
  for_each_row(members, batch, [&](int64_t k, int64_t b) {
    const float* x = table + row_index[k][b] * table_stride;
    const float* h = hidden_rows(k, b);
    float* out = gate_rows(k, b);
    for (int64_t i = 0; i < width; ++i) out[i] = x[i] + h[i];
  });
}

// candidate[k, b] = 2 * (input_table[rows, 2d:] + reset * from_hidden[..., 2d:])   (then sigmoid)
// (torch.addcmul(x_n, reset, h_n).mul_(2): addcmul is one FMA)
void candidate_preactivation(const torch::Tensor& flat_table, const torch::Tensor& rows, const torch::Tensor& gates,
                             const torch::Tensor& from_hidden, torch::Tensor& candidate) {
  const int64_t members = candidate.size(0), batch = candidate.size(1), size = candidate.size(2);
  const Rows gate_rows(gates), hidden_rows(from_hidden), candidate_rows(candidate);
  const float* table = table_data(flat_table);
  const int64_t table_stride = flat_table.stride(0);
  const auto row_index = rows.accessor<int64_t, 2>();
  for_each_row(members, batch, [&](int64_t k, int64_t b) {
    const float* x_n = table + row_index[k][b] * table_stride + 2 * size;
    const float* reset = gate_rows(k, b);
    const float* h_n = hidden_rows(k, b) + 2 * size;
    float* out = candidate_rows(k, b);
    for (int64_t i = 0; i < size; ++i) out[i] = std::fma(reset[i], h_n[i], x_n[i]) * 2.0f;
  });
}

// candidate = 2 * sigmoid(2 a) - 1 = tanh(a), in place; next = candidate + update * (previous - candidate)
// (torch: .mul_(2).sub_(1), then torch.addcmul(candidate, update, previous - candidate): one FMA)
void new_hidden(const torch::Tensor& gates, torch::Tensor& candidate, const torch::Tensor& previous,
                torch::Tensor& next_hidden) {
  const int64_t members = candidate.size(0), batch = candidate.size(1), size = candidate.size(2);
  const Rows gate_rows(gates), candidate_rows(candidate), previous_rows(previous), next_rows(next_hidden);
  for_each_row(members, batch, [&](int64_t k, int64_t b) {
    const float* update = gate_rows(k, b) + size;
    const float* h = previous_rows(k, b);
    float* c = candidate_rows(k, b);
    float* out = next_rows(k, b);
    for (int64_t i = 0; i < size; ++i) {
      const float tanh_value = c[i] * 2.0f - 1.0f;
      c[i] = tanh_value;
      out[i] = std::fma(update[i], h[i] - tanh_value, tanh_value);
    }
  });
}

// One step of backpropagation through time. Writes grad_gates[k, b] = (d reset, d update,
// d(W_hn h + b_hn), d pre-candidate) and returns grad_h * update (what reaches the previous
// hidden state directly; the caller adds the W_hh product to it).
void step_backward(const torch::Tensor& grad_hidden_out, const torch::Tensor& carry, const torch::Tensor& gates,
                   const torch::Tensor& candidate, const torch::Tensor& previous, const torch::Tensor& from_hidden,
                   torch::Tensor& grad_gates, torch::Tensor& grad_h_update) {
  const int64_t members = candidate.size(0), batch = candidate.size(1), size = candidate.size(2);
  const Rows out_rows(grad_hidden_out), carry_rows(carry), gate_rows(gates), candidate_rows(candidate),
      previous_rows(previous), hidden_rows(from_hidden), grad_rows(grad_gates), direct_rows(grad_h_update);
  for_each_row(members, batch, [&](int64_t k, int64_t b) {
    const float *from_out = out_rows(k, b), *from_next = carry_rows(k, b);
    const float *reset = gate_rows(k, b), *update = reset + size;
    const float *c = candidate_rows(k, b), *h = previous_rows(k, b), *h_n = hidden_rows(k, b) + 2 * size;
    float *grad_reset = grad_rows(k, b), *grad_update = grad_reset + size;
    float *grad_candidate_part = grad_reset + 2 * size, *grad_pre_candidate = grad_reset + 3 * size;
    float* direct = direct_rows(k, b);
    for (int64_t i = 0; i < size; ++i) {
      const float grad_h = from_out[i] + from_next[i];
      const float r = reset[i], u = update[i];
      const float to_pre_candidate = (1.0f - u) * (1.0f - c[i] * c[i]);
      const float pre_candidate = grad_h * to_pre_candidate;
      grad_pre_candidate[i] = pre_candidate;
      grad_reset[i] = pre_candidate * ((h_n[i] * r) * (1.0f - r));
      grad_update[i] = grad_h * (((h[i] - c[i]) * u) * (1.0f - u));
      grad_candidate_part[i] = pre_candidate * r;
      direct[i] = grad_h * u;
    }
  });
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gates_preactivation", &gates_preactivation);
  m.def("candidate_preactivation", &candidate_preactivation);
  m.def("new_hidden", &new_hidden);
  m.def("step_backward", &step_backward);
}
