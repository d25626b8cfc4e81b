#include "common/pluginLogging.h"

#include <cstdio>
#include <mutex>
#include <string>

namespace sparse_pose_ros
{
namespace plugin
{
namespace
{

std::mutex gLoggerMutex;
nvinfer1::ILoggerFinder* gLoggerFinder{nullptr};

} // namespace

void setPluginLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept
{
    std::lock_guard<std::mutex> const lock(gLoggerMutex);
    if (gLoggerFinder == nullptr && finder != nullptr)
    {
        gLoggerFinder = finder;
    }
}

void logPlugin(nvinfer1::ILogger::Severity severity, char const* where, char const* message) noexcept
{
    try
    {
        std::string const text = std::string("[SparseInvertedResidual] ") + (where != nullptr ? where : "") + ": "
            + (message != nullptr ? message : "(no message)");
        nvinfer1::ILogger* logger = nullptr;
        {
            std::lock_guard<std::mutex> const lock(gLoggerMutex);
            if (gLoggerFinder != nullptr)
            {
                logger = gLoggerFinder->findLogger();
            }
        }
        if (logger != nullptr)
        {
            logger->log(severity, text.c_str());
        }
        else if (severity <= nvinfer1::ILogger::Severity::kWARNING)
        {
            std::fprintf(stderr, "%s\n", text.c_str());
        }
    }
    catch (...)
    {
        // Logging must never take the engine down (std::string may throw bad_alloc).
    }
}

} // namespace plugin
} // namespace sparse_pose_ros
