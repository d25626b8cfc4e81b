// Host API of the sparse (gather -> compute -> scatter) inverted-residual block kernels.
//
// One header shared by the torch CUDA extension (torch_binding.cpp) and the TensorRT plugin
// (plugin/sparseInvertedResidualPlugin). It only needs the CUDA runtime types, so both C++
// compilers and nvcc can include it.
//
// Semantics (the numpy mirror is sparse_pose_ros/sparse/kernels/reference.py, the PyTorch
// definition is InvertedResidual.forward_masked with BatchNorm folded into the weights):
//   active  = G >= 0.5 at output resolution (B, Ho, Wo)
//   dilated = input positions read by the depthwise 3x3 (stride 1|2) at active outputs; output
//             (oy, ox) reads inputs (oy*s - p .. oy*s - p + 2, ox*s - p .. ox*s - p + 2) with
//             p = padBefore (1: PyTorch padding=1; 0: TF 'SAME' at stride 2 on even sizes)
//   E[n]    = relu6(W_expand X[dilated n] + b_expand)        (E = X rows when has_expand == 0)
//   D[m]    = relu6(sum_taps W_dw E[neighbour] + b_dw)       (only active outputs m)
//   P[m]    = W_proj D[m] + b_proj                           (no activation: linear bottleneck)
//   Y       = (residual ? X : 0), then Y[active m] += P[m]
// Every index list has a fixed capacity (B*Ho*Wo or B*H*W); the number of valid entries lives
// on the device and kernels early-exit on it, so the whole block runs without a host sync.
#ifndef SPARSE_POSE_ROS_SPARSE_BLOCK_H
#define SPARSE_POSE_ROS_SPARSE_BLOCK_H

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace sparse_pose_ros
{

//! Element type of X, G and Y. Weights and all workspace features are always fp32 so that fp16
//! engines accumulate in fp32 (the masked dense reference is fp32).
enum class SparseDType : int32_t
{
    kFLOAT32 = 0,
    kFLOAT16 = 1,
};

struct SparseBlockShape
{
    int32_t batch{0};
    int32_t inChannels{0};     //!< C (== hidden when hasExpand is false)
    int32_t hiddenChannels{0}; //!< Ce
    int32_t outChannels{0};    //!< Co
    int32_t inHeight{0};
    int32_t inWidth{0};
    int32_t stride{1}; //!< 1 or 2 (depthwise stride)
    //! zero rows/cols padded before the input on both axes: 1 (padding=1) or, at stride 2 only,
    //! 0 (MoveNet's TF 'SAME' on an even size: pad 0 before, 1 after). The pad after is implicit
    //! (taps past the input read zero), so the output extent is the same for both.
    int32_t padBefore{1};
    bool hasExpand{true};
    bool residual{false};
};

//! Pointers of one launch. Device memory; layout NCHW (X, G, Y) and row-major weights.
struct SparseBlockTensors
{
    void const* x{nullptr};       //!< (B, C, H, W), dtype
    void const* mask{nullptr};    //!< (B, 1, Ho, Wo), dtype, 0/1
    float const* wExpand{nullptr}; //!< (Ce, C); ignored when hasExpand is false
    float const* bExpand{nullptr}; //!< (Ce)
    float const* wDepthwise{nullptr}; //!< (Ce, 9), taps row-major (ky*3 + kx)
    float const* bDepthwise{nullptr}; //!< (Ce)
    float const* wProject{nullptr}; //!< (Co, Ce)
    float const* bProject{nullptr}; //!< (Co)
    void* y{nullptr};             //!< (B, Co, Ho, Wo), dtype
};

//! Output extent of a 3x3 conv with padding 1 (or TF 'SAME'): floor((in - 1) / stride) + 1.
inline int32_t sparseBlockOutExtent(int32_t inExtent, int32_t stride)
{
    return (inExtent - 1) / stride + 1;
}

//! nullptr when the shape is usable, else a static message naming the violated rule.
char const* sparseBlockShapeError(SparseBlockShape const& shape);

//! Bytes of device workspace one launch needs (index lists, scan partials, feature buffers).
size_t sparseBlockWorkspaceSize(SparseBlockShape const& shape);

//! Enqueue the whole block on `stream`. Never synchronises. Returns cudaErrorInvalidValue for
//! an invalid shape / too small workspace, else the launch status.
cudaError_t launchSparseInvertedResidual(SparseBlockShape const& shape, SparseDType dtype,
    SparseBlockTensors const& tensors, void* workspace, size_t workspaceBytes, cudaStream_t stream);

//! Index lists only (for tests and for sharing lists between blocks with the same mask).
//! activeIdx: capacity B*Ho*Wo; dilatedIdx and rowMap: capacity B*H*W; counts: 2 ints
//! {active, dilated}. rowMap[p] is the row of input position p in dilatedIdx, or -1.
//! `scratch` must hold sparseIndexScratchSize(shape) bytes.
size_t sparseIndexScratchSize(SparseBlockShape const& shape);
cudaError_t launchSparseIndexLists(SparseBlockShape const& shape, SparseDType dtype, void const* mask,
    int32_t* activeIdx, int32_t* dilatedIdx, int32_t* rowMap, int32_t* counts, void* scratch,
    size_t scratchBytes, cudaStream_t stream);

} // namespace sparse_pose_ros

#endif // SPARSE_POSE_ROS_SPARSE_BLOCK_H
