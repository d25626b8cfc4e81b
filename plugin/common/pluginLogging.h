// Logging for the sparse_pose_ros plugin library through the logger TensorRT hands over with
// setLoggerFinder() when it loads the library (stderr until then).
#ifndef SPARSE_POSE_ROS_PLUGIN_LOGGING_H
#define SPARSE_POSE_ROS_PLUGIN_LOGGING_H

#include "NvInferRuntime.h"

namespace sparse_pose_ros
{
namespace plugin
{

void setPluginLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept;

//! Log `message` (prefixed with the plugin name and `where`) at `severity`. Never throws.
void logPlugin(nvinfer1::ILogger::Severity severity, char const* where, char const* message) noexcept;

inline void logPluginError(char const* where, char const* message) noexcept
{
    logPlugin(nvinfer1::ILogger::Severity::kERROR, where, message);
}

} // namespace plugin
} // namespace sparse_pose_ros

#endif // SPARSE_POSE_ROS_PLUGIN_LOGGING_H
